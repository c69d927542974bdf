"""The flag index: per mailbox, the columns a flag/UID/MODSEQ query needs.

Key (mailbox_id u64, segment u32) with segment = uid >> SEGMENT_BITS; value:
n u16 then n entries in UID order, column by column, little-endian: uid u32,
flag-set id u32 (`flag_sets`), modseq u64, size u64, internal date i64, zone
offset i16. A 50,000-message mailbox is ~800 values: FETCH FLAGS and SEARCH
on sizes and dates read those and hand whole columns on, without touching a
message record. Every write of a message record changes its entry in the
same transaction (`mailbox_index`), and the writer keeps `flag_members` (the
UIDs per flag set, what SEARCH UNSEEN and SELECT read) in step.
"""

from __future__ import annotations

import array
import bisect
import struct
from collections.abc import Sequence
from typing import Final

import lmdb

from store import uid_groups
from store.flag_members import MembersWriter
from store.le_columns import to_array, to_bytes
from store.schema import MSG_KEY

SEGMENT_BITS: Final = 6
_COUNT: Final = struct.Struct("<H")
# (typecode, bytes per item) of each column, in stored order.
COLUMNS: Final = (("I", 4), ("I", 4), ("Q", 8), ("Q", 8), ("q", 8), ("h", 2))
ENTRY_BYTES: Final = sum(width for _, width in COLUMNS)
for _code, _width in COLUMNS:
    assert array.array(_code).itemsize == _width, f"array '{_code}' is not {_width} bytes here"


def segment_key(mailbox_id: int, uid: int) -> bytes:
    return MSG_KEY.pack(mailbox_id, uid >> SEGMENT_BITS)


def column_slices(raw: bytes) -> tuple[int, list[bytes]]:
    """(n, the six columns as raw little-endian bytes) of a stored segment."""
    (n,) = _COUNT.unpack_from(raw)
    out: list[bytes] = []
    at = _COUNT.size
    for _, width in COLUMNS:
        out.append(raw[at : at + n * width])
        at += n * width
    return n, out


class Segment:
    """One segment decoded into columns, to change and write back."""

    __slots__ = ("columns",)

    def __init__(self, raw: bytes | None) -> None:
        if raw is None:
            self.columns = [array.array(code) for code, _ in COLUMNS]
            return
        _, slices = column_slices(raw)
        self.columns = [to_array(code, piece) for (code, _), piece in zip(COLUMNS, slices, strict=True)]

    def put(self, uid: int, entry: tuple[int, int, int, int, int]) -> int | None:
        """Insert or replace the entry of `uid`: (flag id, modseq, size, date, zone); the
        flag id it replaced (None: new)."""
        uids = self.columns[0]
        at = bisect.bisect_left(uids, uid)
        if at < len(uids) and uids[at] == uid:
            old = self.columns[1][at]
            for col, value in zip(self.columns[1:], entry, strict=True):
                col[at] = value
            return old
        uids.insert(at, uid)
        for col, value in zip(self.columns[1:], entry, strict=True):
            col.insert(at, value)
        return None

    def remove_all(self, gone: set[int]) -> tuple[Sequence[int], Sequence[int]]:
        """Drop the entries of the UIDs in `gone`; the UIDs it held of them (ascending) and
        their flag ids. One pass over the segment instead of a search and six deletes per UID."""
        uids, fids = self.columns[0], self.columns[1]
        keep = [i for i, uid in enumerate(uids) if uid not in gone]
        if len(keep) == len(uids):
            return (), ()
        dropped = [i for i, uid in enumerate(uids) if uid in gone]
        out = [uids[i] for i in dropped], [fids[i] for i in dropped]
        self.columns = [array.array(col.typecode, map(col.__getitem__, keep)) for col in self.columns]
        return out

    def pack(self) -> bytes:
        return _COUNT.pack(len(self.columns[0])) + b"".join(to_bytes(col) for col in self.columns)


class FlagIndexWriter:
    """The segments one write operation touches, written back once by `flush`, and the
    same changes to the UID lists per flag set (`flag_members`)."""

    def __init__(self, txn: lmdb.Transaction, db: lmdb._Database, members: lmdb._Database, mailbox_id: int) -> None:
        self.txn = txn
        self.db = db
        self.mailbox_id = mailbox_id
        self.segments: dict[int, Segment] = {}
        self.members = MembersWriter(txn, members, mailbox_id)

    def _segment(self, uid: int) -> Segment:
        no = uid >> SEGMENT_BITS
        seg = self.segments.get(no)
        if seg is None:
            raw = self.txn.get(MSG_KEY.pack(self.mailbox_id, no), db=self.db)
            seg = self.segments[no] = Segment(bytes(raw) if raw is not None else None)
        return seg

    def put(self, uid: int, flag_id: int, modseq: int, *, size: int, date: int, tz: int) -> None:
        old = self._segment(uid).put(uid, (flag_id, modseq, size, date, tz))
        self.members.move(uid, old, flag_id)

    def remove_all(self, uids: Sequence[int]) -> None:
        """Drop the entries of `uids` (ascending), segment by segment. A segment that loses
        every entry (EXPUNGE of a run) is read for its UID and flag-id columns only, and the
        member lists lose its UIDs a block at a time."""
        for no, gone in uid_groups.by_key(uids, SEGMENT_BITS):
            seg = self.segments.get(no)
            if seg is None:
                raw = self.txn.get(MSG_KEY.pack(self.mailbox_id, no), db=self.db)
                if raw is None:
                    continue
                raw = bytes(raw)
                _, slices = column_slices(raw)
                held = to_array("I", slices[0])
                if len(gone) >= len(held) and set(gone).issuperset(held):
                    self.members.leave(held, to_array("I", slices[1]))
                    self.segments[no] = Segment(None)  # empty: flush deletes its key
                    continue
                seg = self.segments[no] = Segment(raw)
            self.members.leave(*seg.remove_all(set(gone)))

    def flush(self) -> None:
        for no, seg in self.segments.items():
            key = MSG_KEY.pack(self.mailbox_id, no)
            if len(seg.columns[0]):
                self.txn.put(key, seg.pack(), db=self.db)
            else:
                self.txn.delete(key, db=self.db)
        self.segments.clear()
        self.members.flush()


def count_from(txn: lmdb.Transaction, db: lmdb._Database, mailbox_id: int, low: int) -> int:
    """How many messages of the mailbox have a UID >= `low`: the entry count of each segment,
    the first one searched."""
    prefix = MSG_KEY.pack(mailbox_id, 0)[:8]
    cur = txn.cursor(db=db)
    total = 0
    first = MSG_KEY.pack(mailbox_id, low >> SEGMENT_BITS)
    if cur.set_range(first):
        for key, value in cur:
            if key[:8] != prefix:
                break
            (n,) = _COUNT.unpack_from(value)
            if key == first:  # the segment `low` falls in: only its entries from `low` on
                n -= bisect.bisect_left(to_array("I", value[_COUNT.size : _COUNT.size + 4 * n]), low)
            total += n
    return total
