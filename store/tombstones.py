"""Expunge tombstones (what QRESYNC's VANISHED reports), one key per run of UIDs.

Named database `vanished` (owned by this module): key (mailbox_id u64, modseq
u64, first uid u32); value empty for a single UID, or the last UID of the run
(u32 big-endian) when one expunge removed the consecutive UIDs first..last.
Environments written before runs existed hold only single-UID keys, which read
the same. Why runs: EXPUNGE of 1,000 \\Deleted messages put 1,000 keys in the
committer's transaction (and 1,000 entries in the file, kept for QRESYNC);
the UIDs an EXPUNGE removes are mostly consecutive, so it now puts a few.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

import lmdb

from store.schema import U32, VANISHED_KEY

_SINGLE: Final = b""


def runs(uids: Iterable[int]) -> Iterator[tuple[int, int]]:
    """(first, last) of each run of consecutive UIDs of the ascending `uids`."""
    first = last = -1
    for uid in uids:
        if uid == last + 1 and last >= 0:
            last = uid
            continue
        if last >= 0:
            yield first, last
        first = last = uid
    if last >= 0:
        yield first, last


def put(txn: lmdb.Transaction, db: lmdb._Database, mid: int, modseq: int, uids: Iterable[int]) -> None:
    """Tombstones for `uids` (ascending, distinct) expunged from `mid` at `modseq`."""
    for first, last in runs(uids):
        txn.put(VANISHED_KEY.pack(mid, modseq, first), _SINGLE if first == last else U32.pack(last), db=db)


def decode(key: bytes, value: bytes) -> tuple[int, int, int, int]:
    """(mailbox_id, modseq, first uid, last uid) of one stored tombstone."""
    mid, modseq, first = VANISHED_KEY.unpack(key)
    last = U32.unpack(value)[0] if value else first
    return int(mid), int(modseq), int(first), int(last)


def since(
    txn: lmdb.Transaction, db: lmdb._Database, mid: int, modseq: int, ranges: list[tuple[int, int]] | None
) -> list[int]:
    """The UIDs expunged from `mid` after `modseq` (within `ranges`, sorted and merged, if
    given), ascending and distinct."""
    cur = txn.cursor(db=db)
    out: set[int] = set()
    if not cur.set_range(VANISHED_KEY.pack(mid, modseq + 1, 0)):
        return []
    for key, value in cur:
        m, _modseq, first, last = decode(bytes(key), bytes(value))
        if m != mid:
            break
        if ranges is None:
            out.update(range(first, last + 1))
            continue
        for lo, hi in ranges:
            if lo > last:
                break
            if hi >= first:
                out.update(range(max(lo, first), min(hi, last) + 1))
    return sorted(out)
