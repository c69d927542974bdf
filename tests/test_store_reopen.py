"""The store reopens LMDB when quiet after a large commit (store/committer.py, "Reopening"):
commits are measured in pages, the reopen waits for no reader of the process, and
everything the store holds (database handles, the dedupe tables, readers, writers)
works on the reopened environment; a failed reopen refuses writes until one succeeds.
The memory it gives back is measured in tests/test_store_memory.py."""

from __future__ import annotations

import pathlib
import threading
import time
from collections.abc import Callable, Generator, Iterator
from functools import partial
from typing import cast

import lmdb
import pytest

from mailha_api import store_pb2
from store.bodies import BodySource
from store.committer import Committer, ThreadWrites, WriteContext
from store.engine import MailStore, StoreOptions
from store.environment import open_dbs, open_environment, rebind_dbs
from store.errors import FailedPrecondition, Unavailable
from store.mapgate import MapGate
from store.schema import Dbs

MSG = b"From: a@example.org\r\nSubject: hello\r\n\r\n" + b"body text\r\n" * 40


def _wait(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _reopened(store: MailStore, at_least: int) -> bool:
    return store.committer.reopens >= at_least


def _append(store: MailStore, user: str, count: int, identity: bytes = b"") -> list[store_pb2.AppendReply]:
    header = store_pb2.AppendHeader(epoch=1, user=user, mailbox="INBOX", size=len(MSG), delivery_id=identity)
    return [store.append(header, BodySource(len(MSG), data=MSG)) for _ in range(count)]


@pytest.fixture
def store(tmp_path: pathlib.Path) -> Iterator[MailStore]:
    # Any commit of more than one page is "large": every multi-message write reopens.
    s = MailStore(StoreOptions(data_dir=tmp_path / "s", reopen_after_pages=1))
    try:
        s.fence(1)
        s.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="pw"))
        yield s
    finally:
        s.close()


def test_a_commit_is_measured_in_the_pages_it_wrote(tmp_path: pathlib.Path) -> None:
    assert ThreadWrites().total() is not None, "/proc/thread-self/io is not readable here"
    env = open_environment(tmp_path / "env", map_size=64 << 20, max_readers=16)
    dbs = open_dbs(env)
    committer = Committer(env, dbs, lambda events, tokens: None)
    committer.start()
    try:
        committer.run(None, lambda ctx: ctx.txn.put(b"one", b"x", db=ctx.dbs.meta))
        small = committer.largest_commit_pages
        assert 1 <= small <= 8  # a leaf, the main database's root, the meta page's few bytes

        def many(ctx: WriteContext) -> None:
            for n in range(1000):  # values past half a page: one overflow page each
                ctx.txn.put(b"k%05d" % n, b"v" * 3000, db=ctx.dbs.meta)

        committer.run(None, many)
        assert 1000 <= committer.largest_commit_pages <= 1100
    finally:
        committer.stop()
        env.close()
    assert committer.reopens == 0  # no reopen callable: never


def test_after_a_large_commit_the_store_reopens_when_quiet_and_everything_works(store: MailStore) -> None:
    env, dbs = store.env, store.dbs
    first = _append(store, "alice", 1, identity=b"i" * 32)[0]
    mid = store.status("alice", "INBOX").mailbox_id
    copy = store_pb2.CopyRequest(epoch=1, user="alice", mailbox_id=mid, uid_set="1:*", dest_mailbox="Saved")
    store.create_mailbox(store_pb2.CreateMailboxRequest(epoch=1, user="alice", name="Saved"))
    _append(store, "alice", 30)
    store.copy(copy, move=False)  # 31 messages in one transaction: more than a page
    _wait(lambda: store.committer.reopens >= 1)
    assert store.env is not env and store.dbs is dbs  # a new environment; the same Dbs, rebound
    assert store.committer.largest_commit_pages <= 1 or store.committer.reopens >= 2
    # Reads, on the rebound handles.
    assert store.status("alice", "INBOX").status.messages == 31
    assert store.status("alice", "Saved").status.messages == 31
    fetched = list(store.fetch(store_pb2.FetchRequest(user="alice", mailbox_id=mid, uid_set="1:*", with_body=True)))
    assert sum(1 for r in fetched if r.HasField("meta")) == 31
    assert b"".join(r.chunk.data for r in fetched if r.HasField("chunk") and r.chunk.uid == 1) == MSG
    # Writes: an append, a flag change, the dedupe tables (a repeated delivery is recognised).
    again = _append(store, "alice", 1, identity=b"i" * 32)[0]
    assert again.duplicate and again.uid == first.uid
    flags = store_pb2.StoreFlagsRequest(epoch=1, user="alice", mailbox_id=mid, uid_set="1:5", flags=["\\Seen"])
    flags.mode = store_pb2.FLAG_MODE_ADD
    assert len(store.store_flags(flags).updated) == 5
    assert _append(store, "alice", 1)[0].uid == 32
    # The fence, read from the reopened environment.
    with pytest.raises(FailedPrecondition, match="epoch"):
        store.create_user(store_pb2.CreateUserRequest(epoch=0, name="bob", password="pw"))


def test_a_quiet_store_with_small_writes_is_not_reopened(tmp_path: pathlib.Path) -> None:
    s = MailStore(StoreOptions(data_dir=tmp_path / "s", reopen_after_pages=64))
    try:
        s.fence(1)
        s.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="pw"))
        _append(s, "alice", 5)
        time.sleep(2.5)  # two idle ticks
        assert s.committer.reopens == 0 and s.committer.largest_commit_pages <= 64
    finally:
        s.close()


def test_the_reopen_waits_for_no_open_reader_without_holding_writes_back(store: MailStore) -> None:
    _append(store, "alice", 30)
    mid = store.status("alice", "INBOX").mailbox_id
    _wait(lambda: store.committer.reopens >= 1)
    reopens = store.committer.reopens
    store.copy(
        store_pb2.CopyRequest(epoch=1, user="alice", mailbox_id=mid, uid_set="1:*", dest_mailbox="INBOX"),
        move=False,
    )
    stream = cast(
        "Generator[store_pb2.FetchResponse, None, None]",
        store.fetch(store_pb2.FetchRequest(user="alice", mailbox_id=mid, uid_set="1:*")),
    )
    next(stream)  # a Fetch stream holds its read transaction (and the map gate) until it ends
    try:
        time.sleep(2.5)  # idle ticks pass: the reopen is due but a reader is open
        assert store.committer.reopens == reopens
        started = time.monotonic()
        _append(store, "alice", 1)  # a write is not held behind the waiting reopen
        assert time.monotonic() - started < 1.0
        assert sum(1 for _ in stream) == 59  # the reader's snapshot is intact
    finally:
        stream.close()
    _wait(lambda: store.committer.reopens > reopens)


def test_readers_in_many_threads_see_every_reopen_through(store: MailStore) -> None:
    mid = _append(store, "alice", 1)[0].mailbox_id
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0]

    def reader() -> None:
        try:
            while not stop.is_set():
                assert store.status("alice", "INBOX").status.messages >= 1
                assert store.list_mailboxes(store_pb2.ListMailboxesRequest(user="alice")).mailboxes
                reads[0] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for burst in range(3):
            _append(store, "alice", 20)
            store.copy(
                store_pb2.CopyRequest(epoch=1, user="alice", mailbox_id=mid, uid_set="1:20", dest_mailbox="INBOX"),
                move=False,
            )
            _wait(partial(_reopened, store, burst + 1))
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not errors, errors[0]
    assert reads[0] > 0 and store.committer.reopens >= 3
    assert store.status("alice", "INBOX").status.messages == 1 + 3 * 40


def test_a_failed_reopen_refuses_writes_until_one_succeeds(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "env"
    env = open_environment(path, map_size=64 << 20, max_readers=16)
    dbs = open_dbs(env)
    envs = [env]
    attempts = [0]
    allowed = threading.Event()

    def reopen() -> lmdb.Environment:
        attempts[0] += 1
        envs[-1].close()
        if not allowed.is_set():
            raise lmdb.Error("injected: cannot open")
        envs.append(open_environment(path, map_size=64 << 20, max_readers=16))
        rebind_dbs(envs[-1], dbs)
        return envs[-1]

    committer = Committer(env, dbs, lambda events, tokens: None, reopen=reopen, reopen_after_pages=1, idle_interval=0.2)
    committer.start()
    try:

        def many(ctx: WriteContext) -> None:
            for n in range(10):
                ctx.txn.put(b"k%d" % n, b"v" * 3000, db=ctx.dbs.meta)

        committer.run(None, many)
        _wait(lambda: attempts[0] >= 1)
        time.sleep(0.3)
        with pytest.raises(Unavailable):
            committer.run(None, lambda ctx: ctx.txn.put(b"after", b"1", db=ctx.dbs.meta))
        allowed.set()
        _wait(lambda: committer.reopens == 1)
        committer.run(None, lambda ctx: ctx.txn.put(b"after", b"1", db=ctx.dbs.meta))
    finally:
        committer.stop()
        with envs[-1].begin() as txn:
            assert txn.get(b"after", db=dbs.meta) == b"1" and txn.get(b"k9", db=dbs.meta) == b"v" * 3000
        envs[-1].close()


def test_exclusive_if_free_gives_up_on_a_reader_that_stays_and_lets_readers_on() -> None:
    gate = MapGate()
    ran: list[str] = []
    inside = threading.Event()
    leave = threading.Event()

    def hold() -> None:
        with gate.reading():
            inside.set()
            leave.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait(5)
    started = time.monotonic()
    assert not gate.exclusive_if_free(lambda: ran.append("no"), wait=0.1)
    assert 0.09 <= time.monotonic() - started < 1.0 and ran == []
    with gate.reading():  # not held back after giving up
        pass
    leave.set()
    holder.join(5)
    assert gate.exclusive_if_free(lambda: ran.append("yes"), wait=0.1) and ran == ["yes"]


def test_dbs_rebind_keeps_the_object_and_takes_the_handles(tmp_path: pathlib.Path) -> None:
    env = open_environment(tmp_path / "env", map_size=64 << 20, max_readers=16)
    dbs = open_dbs(env)
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v", db=dbs.messages)
    env.close()
    env = open_environment(tmp_path / "env", map_size=64 << 20, max_readers=16)
    try:
        with pytest.raises(lmdb.Error), env.begin() as txn:
            txn.get(b"k", db=dbs.messages)  # a handle of the closed environment
        same: Dbs = dbs
        rebind_dbs(env, dbs)
        with env.begin() as txn:
            assert txn.get(b"k", db=same.messages) == b"v"
    finally:
        env.close()
