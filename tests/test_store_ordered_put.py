"""store.ordered_put: keys in increasing order are appended (full pages); any other key is put as usual."""

from __future__ import annotations

import pathlib

import lmdb

from store.ordered_put import put_in_order


def _leaf_pages(path: pathlib.Path, put_all: object) -> int:
    env = lmdb.open(str(path), max_dbs=2, map_size=1 << 26)
    try:
        db = env.open_db(b"d")
        with env.begin(write=True) as txn:
            assert callable(put_all)
            put_all(txn, db)
        with env.begin() as txn:
            return int(txn.stat(db)["leaf_pages"])
    finally:
        env.close()


def test_keys_in_order_fill_leaf_pages_instead_of_splitting_them_in_half(tmp_path: pathlib.Path) -> None:
    keys = [n.to_bytes(8, "big") for n in range(3000)]

    def plain(txn: lmdb.Transaction, db: lmdb._Database) -> None:
        for key in keys:
            txn.put(key, b"v" * 900, db=db)

    def ordered(txn: lmdb.Transaction, db: lmdb._Database) -> None:
        for key in keys:
            put_in_order(txn, key, b"v" * 900, db)

    assert _leaf_pages(tmp_path / "ordered", ordered) * 10 < _leaf_pages(tmp_path / "plain", plain) * 8


def test_a_key_out_of_order_or_already_there_is_still_written(tmp_path: pathlib.Path) -> None:
    env = lmdb.open(str(tmp_path / "e"), max_dbs=2)
    try:
        db = env.open_db(b"d")
        with env.begin(write=True) as txn:
            for key, value in ((b"5", b"a"), (b"3", b"b"), (b"5", b"c"), (b"9", b"d")):
                put_in_order(txn, key, value, db)
            assert list(txn.cursor(db=db)) == [(b"3", b"b"), (b"5", b"c"), (b"9", b"d")]
    finally:
        env.close()
