"""store.ordered_delete: a cursor walk deletes exactly the keys asked for, in any order, absent ones skipped."""

from __future__ import annotations

import pathlib
import random

import lmdb

from store.ordered_delete import delete_sorted


def test_delete_sorted_removes_exactly_the_keys_present(tmp_path: pathlib.Path) -> None:
    env = lmdb.open(str(tmp_path / "env"), max_dbs=2, map_size=1 << 26)
    try:
        db = env.open_db(b"d")
        rng = random.Random(3)
        present = {n.to_bytes(12, "big") for n in range(0, 20_000, 2)}
        with env.begin(write=True) as txn:
            for key in sorted(present):
                txn.put(key, b"v" * rng.randint(0, 300), db=db)
        for round_no in range(8):
            asked = {n.to_bytes(12, "big") for n in rng.sample(range(20_010), rng.randint(0, 3_000))}
            # Runs as EXPUNGE gives them, plus the ends of the database.
            start = rng.randrange(20_000)
            asked |= {n.to_bytes(12, "big") for n in range(start, start + 500)} | {bytes(12), b"\xff" * 12}
            order = sorted(asked) if round_no % 2 == 0 else rng.sample(sorted(asked), len(asked))
            with env.begin(write=True) as txn:
                assert delete_sorted(txn, db, order) == len(asked & present)
            present -= asked
            with env.begin() as txn:
                assert {bytes(k) for k in txn.cursor(db=db).iternext(values=False)} == present
        assert present, "the rounds deleted everything: nothing left to compare"
    finally:
        env.close()
