"""Puts of keys that usually arrive in increasing order (new body ids, new UIDs)."""

from __future__ import annotations

import lmdb


def put_in_order(txn: lmdb.Transaction, key: bytes, value: bytes, db: lmdb._Database) -> None:
    """Put `key`, appending when it is the database's highest: LMDB then fills the last leaf
    page up instead of splitting it in half, so data written in key order takes about half
    the leaf pages (measured on the bench corpus: store/README.md). Any other key is put as usual."""
    if not txn.put(key, value, db=db, append=True):
        txn.put(key, value, db=db)
