"""The incremental backup file (`delta.bin`): a stream of typed operations.

    magic "MAILHA-DELTA\\x01"
    record*: op u8, then its fields, each a u32 big-endian length and bytes
    END record: the number of records before it (a cut-off file fails here
    even before its checksum is looked at)

Operations, applied in order onto the previous member's state:

    CLEAR db flags         empty a named database (those copied whole); its LMDB flags
                           (e.g. "dupsort"), to create it alike where it is new
    PUT db key value       one raw LMDB record (messages, bodies, tombstones, ...)
    KEEP mailbox_id ranges the UIDs present in a changed mailbox; others are gone
    DROP mailbox_id        forget every message and tombstone of a mailbox

Values are copied raw, never decoded, so a change of a record's encoding
inside one database needs no change here.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from backup.errors import Damaged

MAGIC = b"MAILHA-DELTA\x01"
_LEN = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_RANGE = struct.Struct(">II")

OP_CLEAR, OP_PUT, OP_KEEP, OP_DROP, OP_END = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class Clear:
    db: str
    flags: tuple[str, ...] = ()  # LMDB database flags set on it: "dupsort", "dupfixed", ...


@dataclass(frozen=True)
class Put:
    db: str
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Keep:
    mailbox_id: int
    ranges: tuple[tuple[int, int], ...]  # inclusive UID ranges, ascending

    def __contains__(self, uid: int) -> bool:
        return any(lo <= uid <= hi for lo, hi in self.ranges)


@dataclass(frozen=True)
class Drop:
    mailbox_id: int


Op = Clear | Put | Keep | Drop


def uid_ranges(uids: list[int]) -> tuple[tuple[int, int], ...]:
    """Ascending UIDs as inclusive ranges (a mailbox's UIDs are mostly runs)."""
    out: list[tuple[int, int]] = []
    for uid in uids:
        if out and uid == out[-1][1] + 1:
            out[-1] = (out[-1][0], uid)
        else:
            out.append((uid, uid))
    return tuple(out)


class DeltaWriter:
    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.records = 0
        self.bytes = len(MAGIC)
        f.write(MAGIC)

    def _record(self, op: int, *fields: bytes) -> None:
        parts = [bytes((op,))]
        for value in fields:
            parts += [_LEN.pack(len(value)), value]
        data = b"".join(parts)
        self._f.write(data)
        self.bytes += len(data)
        self.records += 1

    def clear(self, db: str, flags: tuple[str, ...] = ()) -> None:
        self._record(OP_CLEAR, db.encode(), ",".join(flags).encode())

    def put(self, db: str, key: bytes, value: bytes) -> None:
        self._record(OP_PUT, db.encode(), key, value)

    def keep(self, mailbox_id: int, ranges: tuple[tuple[int, int], ...]) -> None:
        self._record(OP_KEEP, _U64.pack(mailbox_id), b"".join(_RANGE.pack(lo, hi) for lo, hi in ranges))

    def drop(self, mailbox_id: int) -> None:
        self._record(OP_DROP, _U64.pack(mailbox_id))

    def end(self) -> None:
        self._f.write(bytes((OP_END,)) + _LEN.pack(8) + _U64.pack(self.records))
        self.bytes += 13


def read_delta(f: BinaryIO, where: str) -> Iterator[Op]:
    """The operations of a delta file; Damaged (naming `where`) if it is malformed or cut off."""
    if f.read(len(MAGIC)) != MAGIC:
        raise Damaged(f"{where}: not an incremental backup file (bad magic)")
    count = 0
    while True:
        head = f.read(1)
        if not head:
            raise Damaged(f"{where}: cut off after {count} records (no end record)")
        op = head[0]
        if op == OP_END:
            expected = _u64(f, where)
            if expected != count:
                raise Damaged(f"{where}: end record says {expected} records, read {count}")
            if f.read(1):
                raise Damaged(f"{where}: data after the end record")
            return
        if op == OP_CLEAR:
            name = _field(f, where).decode()
            flags = _field(f, where).decode()
            yield Clear(name, tuple(flags.split(",")) if flags else ())
        elif op == OP_PUT:
            yield Put(_field(f, where).decode(), _field(f, where), _field(f, where))
        elif op == OP_KEEP:
            mid = _u64(f, where)
            raw = _field(f, where)
            if len(raw) % _RANGE.size:
                raise Damaged(f"{where}: malformed UID ranges in record {count}")
            yield Keep(mid, tuple(_RANGE.iter_unpack(raw)))
        elif op == OP_DROP:
            mid = _u64(f, where)
            yield Drop(mid)
        else:
            raise Damaged(f"{where}: unknown operation {op} in record {count}")
        count += 1


def _field(f: BinaryIO, where: str) -> bytes:
    head = f.read(_LEN.size)
    if len(head) != _LEN.size:
        raise Damaged(f"{where}: cut off inside a record")
    (n,) = _LEN.unpack(head)
    data = f.read(n)
    if len(data) != n:
        raise Damaged(f"{where}: cut off inside a record")
    return data


def _u64(f: BinaryIO, where: str) -> int:
    raw = _field(f, where)
    if len(raw) != _U64.size:
        raise Damaged(f"{where}: malformed record (a number of {len(raw)} bytes)")
    return int(_U64.unpack(raw)[0])
