"""SAVEDATE (RFC 8514): when each message was saved into its mailbox.

Named database `save_dates` (owned by this module): mailbox_id u64, uid u32
-> unix seconds i64 (little-endian). APPEND and COPY/MOVE write the time of
their write transaction (a copy is a new save, RFC 8514 section 3) unless it is the message's
internal date (`saved`: a delivery's, an APPEND's without a date); RENAME of
INBOX carries the dates over with the messages; EXPUNGE and DELETE remove them,
in the same transaction as the message records. Messages stored before this
table existed have no entry: readers use the internal date instead, as RFC 8514
section 4 lets a server do for messages whose save date it does not know.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final

import lmdb

from store.ordered_delete import delete_sorted
from store.schema import MSG_KEY, Dbs

_TIME: Final = struct.Struct("<q")


def put(txn: lmdb.Transaction, dbs: Dbs, mid: int, uid: int, when: int) -> None:
    txn.put(MSG_KEY.pack(mid, uid), _TIME.pack(when), db=dbs.save_dates)


def saved(txn: lmdb.Transaction, dbs: Dbs, mid: int, uid: int, when: int, *, internal_date: int) -> None:
    """The message was saved at `when` (APPEND, COPY, MOVE). Nothing is written when that is
    its internal date: a missing entry reads as the internal date (`get`'s callers), so the
    answer is the same, and a delivery or an APPEND without a date (internal date = now)
    does not dirty this table's pages (~3 of an append's ~40 at 50,000 messages)."""
    if when != internal_date:
        put(txn, dbs, mid, uid, when)


def remove(txn: lmdb.Transaction, dbs: Dbs, keys: Iterable[bytes]) -> None:
    """Forget the save dates of the messages of these (mailbox, uid) keys (ascending is fastest)."""
    delete_sorted(txn, dbs.save_dates, keys)


def get(txn: lmdb.Transaction, dbs: Dbs, mid: int, uid: int) -> int | None:
    raw = txn.get(MSG_KEY.pack(mid, uid), db=dbs.save_dates)
    return None if raw is None else int(_TIME.unpack(raw)[0])
