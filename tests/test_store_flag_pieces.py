"""A STORE over many messages commits in pieces (store/message_ops.py STORE_PIECE):
the pieces cover exactly the set, the reply is the whole STORE's, and a write queued
by another user while it runs is committed before it ends instead of after it."""

from __future__ import annotations

import pathlib
import random
import threading
from concurrent.futures import Future

import lmdb
import pytest

from mailha_api import store_pb2
from store import message_ops, messages, uidset
from store.bodies import BodySource
from store.engine import MailStore, StoreOptions

MSG = b"From: a@example.org\r\nSubject: hello\r\n\r\nbody text\r\n"


def _filled(tmp_path: pathlib.Path, count: int) -> tuple[MailStore, int]:
    store = MailStore(StoreOptions(data_dir=tmp_path / "s"))
    store.fence(1)
    for name in ("alice", "bob"):
        store.create_user(store_pb2.CreateUserRequest(epoch=1, name=name, password="pw"))
    header = store_pb2.AppendHeader(epoch=1, user="alice", mailbox="INBOX", size=len(MSG))
    for _ in range(count):
        store.append(header, BodySource(len(MSG), data=MSG))
    return store, store.status("alice", "INBOX").mailbox_id


def test_pieces_cover_the_set_exactly_and_hold_at_most_the_bound(tmp_path: pathlib.Path) -> None:
    store, mid = _filled(tmp_path, 300)
    try:
        expunge = store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=mid, uid_set="")
        flags = store_pb2.StoreFlagsRequest(
            epoch=1, user="alice", mailbox_id=mid, uid_set="10:40,77,100:130", flags=["\\Deleted"]
        )
        flags.mode = store_pb2.FLAG_MODE_ADD
        store.store_flags(flags)
        store.expunge(expunge)  # gaps in the UIDs
        rng = random.Random(7)
        texts = ["1:*", "*", "5:*,2", "1:300", "300:1", "3,9,200:*", "1:5", "290:400", "41:76"]
        texts += [f"{rng.randint(1, 320)}:{rng.randint(1, 320)},{rng.randint(1, 320)}" for _ in range(20)]
        for text in texts:
            for per_piece in (1, 7, 50, 1000):

                def uids(t: str) -> list[int]:
                    return store.read(lambda txn: [u for u, _ in messages.in_set(txn, store.dbs, mid, t)])

                def cut(txn: lmdb.Transaction, t: str = text, k: int = per_piece) -> list[str]:
                    return messages.set_pieces(txn, store.dbs, mid, t, k)

                pieces = store.read(cut)
                whole = uids(text)
                parts = [uids(p) for p in pieces]
                assert [u for part in parts for u in part] == whole, (text, per_piece, pieces)
                assert all(0 < len(part) <= per_piece for part in parts) or pieces == [text], (text, pieces)
                if len(whole) <= per_piece:
                    assert pieces == [text]
    finally:
        store.close()


def test_a_large_store_reports_every_change_and_lets_other_writes_through(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(message_ops, "STORE_PIECE", 20)
    store, mid = _filled(tmp_path, 200)
    try:
        before = store.status("alice", "INBOX").status.highestmodseq
        bob_mid = store.status("bob", "INBOX").mailbox_id
        order: list[str] = []
        lock = threading.Lock()

        def note(name: str) -> None:
            with lock:
                order.append(name)

        req = store_pb2.StoreFlagsRequest(epoch=1, user="alice", mailbox_id=mid, uid_set="1:*", flags=["\\Seen"])
        req.mode = store_pb2.FLAG_MODE_ADD
        whole: Future[store_pb2.StoreFlagsReply] = store.submit_store_flags(req)
        whole.add_done_callback(lambda _: note("store"))
        bob = store_pb2.StoreFlagsRequest(epoch=1, user="bob", mailbox_id=bob_mid, uid_set="1", flags=["\\Seen"])
        store.submit_store_flags(bob).add_done_callback(lambda _: note("bob"))  # queued behind piece 1 at most
        reply = whole.result(timeout=60)
        assert order.index("bob") < order.index("store"), order  # not held for the whole STORE
        assert sorted(m.uid for m in reply.updated) == list(range(1, 201))
        assert all("\\Seen" in m.flags for m in reply.updated)
        assert reply.highestmodseq == store.status("alice", "INBOX").status.highestmodseq
        assert reply.highestmodseq == before + 10  # ten pieces, ten commits
        assert store.status("alice", "INBOX").status.unseen == 0
        again = store.store_flags(req)  # nothing left to change
        assert list(again.updated) == []
        assert uidset.parse("1:*").resolve(200) == [(1, 200)]
    finally:
        store.close()
