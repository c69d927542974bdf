"""Expunge tombstones stored as runs of UIDs (store/tombstones.py): VANISHED answers the same
UIDs as with one key per UID, including for environments that hold the older single keys."""

from __future__ import annotations

import pathlib

import lmdb

from mailha_api import store_pb2
from store import tombstones
from store.bodies import BodySource
from store.engine import MailStore, StoreOptions
from store.schema import MAX_DBS, VANISHED_KEY

MSG = b"From: a@example.org\r\nSubject: hello\r\n\r\nbody text\r\n"


def _setup(store: MailStore, count: int) -> int:
    store.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="pw"))
    for _ in range(count):
        header = store_pb2.AppendHeader(epoch=1, user="alice", mailbox="INBOX", size=len(MSG))
        store.append(header, BodySource(len(MSG), data=MSG))
    return store.status("alice", "INBOX").mailbox_id


def _expunge(store: MailStore, mid: int, uids: str) -> int:
    store.store_flags(
        store_pb2.StoreFlagsRequest(
            epoch=1, user="alice", mailbox_id=mid, uid_set=uids, mode=store_pb2.FLAG_MODE_ADD, flags=["\\Deleted"]
        )
    )
    return store.expunge(store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=mid)).highestmodseq


def _vanished(store: MailStore, mid: int, since: int, uids: str = "") -> list[int]:
    req = store_pb2.VanishedRequest(user="alice", mailbox_id=mid, since_modseq=since, uid_set=uids)
    return list(store.vanished(req).uids)


def _keys(store: MailStore, mid: int) -> list[tuple[int, int, int, int]]:
    with store.env.begin() as txn:
        return [
            tombstones.decode(bytes(k), bytes(v))
            for k, v in txn.cursor(db=store.dbs.vanished)
            if VANISHED_KEY.unpack(bytes(k))[0] == mid
        ]


def test_runs_of_ascending_uids() -> None:
    assert list(tombstones.runs([])) == []
    assert list(tombstones.runs([5])) == [(5, 5)]
    assert list(tombstones.runs([1, 2, 3, 7, 9, 10])) == [(1, 3), (7, 7), (9, 10)]


def test_expunge_of_runs_stores_one_key_per_run_and_vanished_lists_every_uid(mail_store: MailStore) -> None:
    mid = _setup(mail_store, 40)
    first = _expunge(mail_store, mid, "3:20,22,30:35")
    assert [(f, last) for _, _, f, last in _keys(mail_store, mid)] == [(3, 20), (22, 22), (30, 35)]
    second = _expunge(mail_store, mid, "1,40")
    everything = [1, *range(3, 21), 22, *range(30, 36), 40]
    assert _vanished(mail_store, mid, 0) == everything
    assert _vanished(mail_store, mid, first) == [1, 40]
    assert _vanished(mail_store, mid, second) == []
    # A UID set cuts the runs: only the UIDs inside it, whatever the runs' bounds.
    assert _vanished(mail_store, mid, 0, "5:7,19:23,34:*") == [5, 6, 7, 19, 20, 22, 34, 35, 40]
    assert _vanished(mail_store, mid, 0, "21") == []
    assert _vanished(mail_store, mid, first, "2:39") == []


def test_single_uid_keys_of_an_older_environment_read_with_runs(tmp_path: pathlib.Path) -> None:
    """Tombstones written one key per UID (before runs) and runs written after, side by side."""
    store = MailStore(StoreOptions(data_dir=tmp_path / "s", max_message_size=1024 * 1024))
    store.fence(1)
    try:
        mid = _setup(store, 12)
        with store.env.begin(write=True) as txn:  # what the older code wrote for an expunge of 1:3
            for uid in (1, 2, 3):
                txn.put(VANISHED_KEY.pack(mid, 5, uid), b"", db=store.dbs.vanished)
        _expunge(store, mid, "6:9")
        assert _vanished(store, mid, 0) == [1, 2, 3, 6, 7, 8, 9]
        assert _vanished(store, mid, 0, "2,7") == [2, 7]
    finally:
        store.close()
    env = lmdb.open(str(tmp_path / "s" / "lmdb"), max_dbs=MAX_DBS, readonly=True, lock=False)
    try:
        with env.begin() as txn:
            db = env.open_db(b"vanished", txn=txn, create=False)
            assert txn.stat(db)["entries"] == 4  # three old single keys and one run
    finally:
        env.close()
