"""Deletes of many keys in increasing order (what EXPUNGE removes from each of its databases).

`txn.delete(key)` finds each key from the root of the tree; a cursor that has just
deleted a key stands on the next one, which for an EXPUNGE of a run of UIDs is the next
key to delete. Measured on 1,000 consecutive 12-byte keys among 53,000: a get and a
delete per key 0.51 ms, the cursor walk 0.23 ms (store/README.md).
"""

from __future__ import annotations

from collections.abc import Iterable

import lmdb


def delete_sorted(txn: lmdb.Transaction, db: lmdb._Database, keys: Iterable[bytes]) -> int:
    """Delete `keys` from `db`; how many were there. Any order is correct; ascending and
    distinct (what the walk is for) is fast."""
    cur = txn.cursor(db=db)
    at, delete, seek = cur.key, cur.delete, cur.set_key
    count = 0
    for key in keys:
        if at() != key and not seek(key):
            continue
        delete()
        count += 1
    return count
