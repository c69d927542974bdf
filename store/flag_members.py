"""Per mailbox and flag-set id, the UIDs of the messages holding exactly that flag set.

Key (mailbox_id u64, flag-set id u32, block u32) with block = uid >> BLOCK_BITS;
value: the UIDs of that block holding that flag set, ascending, u32
little-endian (at most 1 KiB, so a value stays on its leaf page). The flag
index (`flag_index`) keeps every message's flag-set id by UID; this is the
same fact turned around, written by the flag index's writer in the same
transaction, so the two never disagree (`mailbox_index.disagreements`
compares them).

Flag-set ids start at 1; the list of id 0 (`EVERY`) holds every UID of the
mailbox, changed only when messages come and go (not by STORE): SELECT reads
its UIDs as ~200 values of 1 KiB for 50,000 messages instead of the flag
index's ~800 values of 2 KiB.

What it answers without looking at every message: the flag sets a mailbox
uses (a key walk that jumps from id to id), SEARCH UNSEEN and other flag keys
(the UIDs of the ids that pass, as stored bytes), SELECT's UIDs and first
unseen message, and whether a STORE would change anything.
"""

from __future__ import annotations

import array
import bisect
import struct
from collections.abc import Iterator, Sequence
from typing import Final

import lmdb

from store import uid_groups
from store.le_columns import to_array, to_bytes

BLOCK_BITS: Final = 8
BLOCK_MASK: Final = (1 << BLOCK_BITS) - 1
EVERY: Final = 0  # the list of every message of the mailbox (flag-set ids start at 1)
KEY: Final = struct.Struct(">QII")
_MAX_UID: Final = 0xFFFFFFFF


def _uids(raw: bytes | memoryview) -> array.array[int]:
    return to_array("I", raw)


class MembersWriter:
    """The membership changes of one write operation on one mailbox, written by `flush`."""

    def __init__(self, txn: lmdb.Transaction, db: lmdb._Database, mailbox_id: int) -> None:
        self.txn = txn
        self.db = db
        self.mailbox_id = mailbox_id
        # (flag id, block) -> (UIDs to add, UIDs to remove); a UID is in at most one of the two
        self._changes: dict[tuple[int, int], tuple[set[int], set[int]]] = {}

    def _change(self, fid: int, uid: int) -> tuple[set[int], set[int]]:
        where = (fid, uid >> BLOCK_BITS)
        change = self._changes.get(where)
        if change is None:
            change = self._changes[where] = (set(), set())
        return change

    def move(self, uid: int, old: int | None, new: int | None) -> None:
        """`uid` held flag set `old` (None: it was not in the mailbox) and now holds `new`
        (None: it left the mailbox)."""
        if old == new:
            return
        if old is None:
            self._add(EVERY, uid)  # a message comes: the list of every message too
        else:
            self._remove(old, uid)
        if new is None:
            self._remove(EVERY, uid)
        else:
            self._add(new, uid)

    def leave(self, uids: Sequence[int], fids: Sequence[int]) -> None:
        """The messages `uids` (ascending), holding the flag sets `fids`, leave the mailbox:
        `move(uid, fid, None)` of each, as one set update per block and flag set (EXPUNGE of
        1,000 made 2,000 single-UID changes; its copies mostly hold one flag set)."""
        at = 0
        for block, here in uid_groups.by_key(uids, BLOCK_BITS):
            held = fids[at : at + len(here)]
            at += len(here)
            self._remove_many(EVERY, block, here)
            kinds = set(held)
            if len(kinds) == 1:
                self._remove_many(kinds.pop(), block, here)
                continue
            for fid in kinds:
                self._remove_many(fid, block, [uid for uid, f in zip(here, held, strict=True) if f == fid])

    def _remove_many(self, fid: int, block: int, uids: Sequence[int]) -> None:
        change = self._changes.get((fid, block))
        if change is None:
            change = self._changes[(fid, block)] = (set(), set())
        change[0].difference_update(uids)
        change[1].update(uids)

    def _add(self, fid: int, uid: int) -> None:
        adds, removes = self._change(fid, uid)
        removes.discard(uid)
        adds.add(uid)

    def _remove(self, fid: int, uid: int) -> None:
        adds, removes = self._change(fid, uid)
        adds.discard(uid)
        removes.add(uid)

    def flush(self) -> None:
        for (fid, block), (adds, removes) in self._changes.items():
            key = KEY.pack(self.mailbox_id, fid, block)
            raw = self.txn.get(key, db=self.db)
            uids = _uids(bytes(raw)) if raw is not None else array.array("I")
            if len(removes) >= len(uids) and removes.issuperset(uids):
                uids = array.array("I")  # the whole block goes (EXPUNGE of a run)
            for uid in removes if uids else ():
                at = bisect.bisect_left(uids, uid)
                if at < len(uids) and uids[at] == uid:
                    del uids[at]
            ordered = sorted(adds)
            if ordered and (not uids or ordered[0] > uids[-1]):
                uids.extend(ordered)  # new messages: the usual case, at the end
            else:
                for uid in ordered:
                    at = bisect.bisect_left(uids, uid)
                    if at == len(uids) or uids[at] != uid:
                        uids.insert(at, uid)
            if uids:
                self.txn.put(key, to_bytes(uids), db=self.db)
            elif raw is not None:
                self.txn.delete(key, db=self.db)
        self._changes.clear()


def flag_ids(txn: lmdb.Transaction, db: lmdb._Database, mailbox_id: int) -> list[int]:
    """The flag-set ids the mailbox's messages hold, ascending: one cursor jump per id."""
    out: list[int] = []
    cur = txn.cursor(db=db)
    fid = EVERY + 1
    while fid <= _MAX_UID and cur.set_range(KEY.pack(mailbox_id, fid, 0)):
        mid, fid, _ = KEY.unpack(cur.key())
        if mid != mailbox_id:
            break
        out.append(fid)
        fid += 1
    return out


def _blocks(cur: lmdb.Cursor, mailbox_id: int, fid: int, lo: int, hi: int) -> Iterator[tuple[int, bytes | memoryview]]:
    """(block, stored UIDs) of `fid` for the blocks that may hold UIDs in [lo, hi]."""
    if not cur.set_range(KEY.pack(mailbox_id, fid, lo >> BLOCK_BITS)):
        return
    last = hi >> BLOCK_BITS
    for key, value in cur:
        mid, f, block = KEY.unpack(key)
        if mid != mailbox_id or f != fid or block > last:
            return
        yield block, value


def uids_in(
    txn: lmdb.Transaction, db: lmdb._Database, mailbox_id: int, fid: int, ranges: list[tuple[int, int]]
) -> bytes:
    """The UIDs holding `fid` in `ranges` (ascending, disjoint, inclusive), ascending, as
    u32 little-endian bytes: whole blocks are passed on as stored."""
    parts: list[bytes] = []
    cur = txn.cursor(db=db)
    for lo, hi in ranges:
        first, last = KEY.pack(mailbox_id, fid, lo >> BLOCK_BITS), KEY.pack(mailbox_id, fid, hi >> BLOCK_BITS)
        if not cur.set_range(first):
            break
        # Keys compare as bytes in (mailbox, flag set, block) order: every key from `first`
        # up to `last` is a block of this list. Only the first and the last block can be
        # partly outside the range; the ones between are passed on without a look (SELECT
        # of 50,000 messages joins ~200 of them).
        for stored_key, value in cur:
            key = bytes(stored_key)  # bytes already, unless the transaction uses buffers
            if key > last:
                break
            raw = bytes(value)
            if (key != first or not lo & BLOCK_MASK) and (key != last or (hi + 1) & BLOCK_MASK == 0):
                parts.append(raw)
                continue
            uids = _uids(raw)
            start = bisect.bisect_left(uids, lo)
            end = bisect.bisect_right(uids, hi)
            if start < end:
                parts.append(raw[start * 4 : end * 4])
    return b"".join(parts)


def holds_any(
    txn: lmdb.Transaction, db: lmdb._Database, mailbox_id: int, fid: int, ranges: list[tuple[int, int]]
) -> bool:
    """Whether some message in `ranges` (inclusive) holds `fid`: stops at the first."""
    cur = txn.cursor(db=db)
    for lo, hi in ranges:
        for _, value in _blocks(cur, mailbox_id, fid, lo, hi):
            uids = _uids(value)
            at = bisect.bisect_left(uids, lo)
            if at < len(uids) and uids[at] <= hi:
                return True
    return False


def first_uid(txn: lmdb.Transaction, db: lmdb._Database, mailbox_id: int, fid: int) -> int:
    """The lowest UID holding `fid` (0: none)."""
    for _, value in _blocks(txn.cursor(db=db), mailbox_id, fid, 0, _MAX_UID):
        return int(_uids(bytes(value)[:4])[0])
    return 0


def entries(txn: lmdb.Transaction, db: lmdb._Database) -> Iterator[tuple[int, int, int]]:
    """Every (mailbox id, flag id, uid) stored (flag id EVERY included): for the consistency
    check, which also wants a value error for a block that is empty, unordered or holds
    another block's UIDs."""
    for key, value in txn.cursor(db=db):
        mid, fid, block = KEY.unpack(key)
        uids = list(_uids(bytes(value)))
        if not uids or uids != sorted(set(uids)) or {uid >> BLOCK_BITS for uid in uids} != {block}:
            raise ValueError(f"flag members ({mid}, {fid}, {block}): malformed block {uids[:8]}")
        for uid in uids:
            yield mid, fid, uid
