"""Monotonic counters in the meta database (never reused, even after deletes)."""

from __future__ import annotations

import lmdb

from store.schema import U64, Dbs


def next_value(txn: lmdb.Transaction, dbs: Dbs, key: bytes, initial: int) -> int:
    raw = txn.get(key, db=dbs.meta)
    value = initial if raw is None else int(U64.unpack(raw)[0])
    txn.put(key, U64.pack(value + 1), db=dbs.meta)
    return value
