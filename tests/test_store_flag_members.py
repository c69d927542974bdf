"""store/flag_members.py: the UIDs per flag set, against a plain model of who holds what."""

from __future__ import annotations

import array
import pathlib
import random

import lmdb

from store import flag_members
from store.flag_members import MembersWriter


def _env(tmp_path: pathlib.Path) -> tuple[lmdb.Environment, lmdb._Database]:
    env = lmdb.open(str(tmp_path / "env"), max_dbs=4, map_size=1 << 26)
    return env, env.open_db(b"members")


def _model_uids(model: dict[int, int], fid: int, ranges: list[tuple[int, int]]) -> list[int]:
    return sorted(u for u, f in model.items() if f == fid and any(lo <= u <= hi for lo, hi in ranges))


def test_random_moves_in_and_across_writers_match_a_model(tmp_path: pathlib.Path) -> None:
    env, db = _env(tmp_path)
    rng = random.Random(17)
    model: dict[int, int] = {}  # uid -> flag id, for mailbox 5
    other: dict[int, int] = {}  # mailbox 6 must never be touched by mailbox 5's writes
    with env.begin(write=True) as txn:
        w = MembersWriter(txn, db, 6)
        for uid in range(1, 300):
            w.move(uid, None, 1)
            other[uid] = 1
        w.flush()
    for _ in range(40):
        with env.begin(write=True) as txn:
            w = MembersWriter(txn, db, 5)
            # Several changes of the same UIDs inside one writer (A -> B -> A included).
            for _ in range(rng.randint(1, 80)):
                uid = rng.choice([rng.randint(1, 40), rng.randint(1, 2000), max(model, default=0) + 1])
                old = model.get(uid)
                new = None if rng.random() < 0.2 else rng.randint(1, 4)
                w.move(uid, old, new)
                if new is None:
                    model.pop(uid, None)
                else:
                    model[uid] = new
            w.flush()
        with env.begin() as txn:
            assert flag_members.flag_ids(txn, db, 5) == sorted(set(model.values()))
            for fid in range(1, 6):
                ranges = [(1, 2000)] if rng.random() < 0.5 else [(3, 260), (300, 300), (511, 1400)]
                raw = flag_members.uids_in(txn, db, 5, fid, ranges)
                assert list(array.array("I", raw)) == _model_uids(model, fid, ranges)
                assert flag_members.holds_any(txn, db, 5, fid, ranges) == bool(_model_uids(model, fid, ranges))
                held = [u for u, f in model.items() if f == fid]
                assert flag_members.first_uid(txn, db, 5, fid) == (min(held) if held else 0)
            every = flag_members.uids_in(txn, db, 5, flag_members.EVERY, [(1, 0xFFFFFFFF)])
            assert list(array.array("I", every)) == sorted(model)
            stored = {(m, u): f for m, f, u in flag_members.entries(txn, db) if f != flag_members.EVERY}
            assert stored == {**{(5, u): f for u, f in model.items()}, **{(6, u): f for u, f in other.items()}}
    assert model, "the random walk left nothing to compare"


def test_leave_is_move_to_none_of_each(tmp_path: pathlib.Path) -> None:
    """MembersWriter.leave (EXPUNGE's bulk form) leaves the lists as a move(uid, fid, None) per UID."""
    env, db = _env(tmp_path)
    rng = random.Random(5)
    model = {uid: rng.choice([1, 1, 1, 2, 3]) for uid in range(1, 1500) if rng.random() < 0.8}
    with env.begin(write=True) as txn:
        w = MembersWriter(txn, db, 5)
        for uid, fid in model.items():
            w.move(uid, None, fid)
        w.flush()
    for _ in range(6):
        gone = sorted(u for u in model if rng.random() < 0.3)
        with env.begin(write=True) as txn:
            w = MembersWriter(txn, db, 5)
            if gone:  # a change of a leaving UID in the same writer first
                w.move(gone[0], model[gone[0]], 4)
                model[gone[0]] = 4
            w.leave(gone, [model[u] for u in gone])
            w.flush()
        for uid in gone:
            del model[uid]
        with env.begin() as txn:
            every = flag_members.uids_in(txn, db, 5, flag_members.EVERY, [(1, 0xFFFFFFFF)])
            assert list(array.array("I", every)) == sorted(model)
            stored = {(m, u): f for m, f, u in flag_members.entries(txn, db) if f != flag_members.EVERY}
            assert stored == {(5, u): f for u, f in model.items()}
    assert model, "everything left"
