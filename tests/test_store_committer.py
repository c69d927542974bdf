"""Group commit: batching, per-operation rollback, acknowledgement only after the commit."""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, cast

import lmdb
import pytest

from mailha_api import store_pb2
from store import fencing
from store.committer import Committer, LoneWriter, WriteContext
from store.environment import open_dbs
from store.errors import FailedPrecondition, InvalidArgument, StoreError
from store.schema import MAX_DBS, Dbs


@pytest.fixture
def env_dbs(tmp_path: pathlib.Path) -> Iterator[tuple[lmdb.Environment, Dbs]]:
    env = lmdb.open(str(tmp_path / "env"), max_dbs=MAX_DBS, map_size=64 * 1024 * 1024)
    try:
        yield env, open_dbs(env)
    finally:
        env.close()


def test_failing_operation_is_rolled_back_alone(env_dbs: tuple[lmdb.Environment, Dbs]) -> None:
    env, dbs = env_dbs
    published: list[store_pb2.ChangeEvent] = []
    committer = Committer(env, dbs, lambda events, tokens: published.extend(events), max_batch=64)
    release = threading.Event()

    def blocker(ctx: WriteContext) -> None:
        release.wait(5)  # holds the committer so the next operations queue up into one batch

    def put(key: bytes, fail: bool) -> Callable[[WriteContext], bytes]:
        def op(ctx: WriteContext) -> bytes:
            ctx.txn.put(key, b"v", db=dbs.meta)
            ctx.events.append(store_pb2.ChangeEvent(mailbox_id=1, modseq=int(key[1:])))
            if fail:
                raise InvalidArgument(f"{key!r} refused")
            return key

        return op

    committer.start()
    try:
        first = committer.submit(None, blocker)
        futures = [committer.submit(None, put(b"k%d" % n, fail=n == 3)) for n in range(8)]
        release.set()
        first.result(5)
        results: list[object] = []
        for f in futures:
            try:
                results.append(f.result(5))
            except StoreError as exc:
                results.append(exc.message)
        with env.begin() as txn:
            # Acknowledged means durable and visible to any new reader.
            present = [n for n in range(8) if txn.get(b"k%d" % n, db=dbs.meta) is not None]
    finally:
        committer.stop()
    assert present == [0, 1, 2, 4, 5, 6, 7]
    assert results[3] == "b'k3' refused"
    assert [e.modseq for e in published] == [0, 1, 2, 4, 5, 6, 7]  # no event from the failed operation
    assert committer.ops == 9 and committer.batches <= 2  # queued operations share one commit


def test_epoch_check_happens_inside_the_write(env_dbs: tuple[lmdb.Environment, Dbs]) -> None:
    env, dbs = env_dbs
    committer = Committer(env, dbs, lambda events, tokens: None)
    committer.start()
    try:
        committer.run(None, lambda ctx: fencing.fence(ctx.txn, ctx.dbs, 4), needs_writable=False)
        with pytest.raises(FailedPrecondition, match="fenced: writer epoch 3 is older"):
            committer.run(3, lambda ctx: ctx.txn.put(b"x", b"1", db=ctx.dbs.meta))
        with pytest.raises(FailedPrecondition, match="epoch 5 not established"):
            committer.run(5, lambda ctx: ctx.txn.put(b"x", b"1", db=ctx.dbs.meta))
        assert committer.run(4, lambda ctx: ctx.txn.put(b"x", b"1", db=ctx.dbs.meta))
        with env.begin() as txn:
            assert txn.get(b"x", db=dbs.meta) == b"1"
    finally:
        committer.stop()


class _SyncWatchingEnv:
    """The real environment, recording at each sync whether the watched writes were answered yet."""

    def __init__(self, env: lmdb.Environment) -> None:
        self._env = env
        self.watched: list[Future[Any]] = []
        self.answered_at_sync: list[list[bool]] = []

    def sync(self, force: bool = False) -> None:
        self.answered_at_sync.append([f.done() for f in self.watched])
        self._env.sync(force)

    def __getattr__(self, name: str) -> object:
        return getattr(self._env, name)


def test_durable_write_is_synced_before_its_reply_and_flag_writes_are_not(
    env_dbs: tuple[lmdb.Environment, Dbs],
) -> None:
    env, dbs = env_dbs
    watching = _SyncWatchingEnv(env)
    committer = Committer(cast("lmdb.Environment", watching), dbs, lambda events, tokens: None)
    committer.start()
    try:
        # A flag-like write alone: committed (data pages fsynced) but no meta sync.
        flag = committer.submit(None, lambda ctx: ctx.txn.put(b"f", b"1", db=ctx.dbs.meta), durable=False)
        assert flag.result(5)
        assert watching.answered_at_sync == [] and committer.syncs == 0
        # A durable write (the default, as for an append): synced while still unanswered.
        release = threading.Event()
        blocker = committer.submit(None, lambda ctx: release.wait(5), durable=False)
        durable = committer.submit(None, lambda ctx: ctx.txn.put(b"d", b"1", db=ctx.dbs.meta))
        watching.watched = [blocker, durable]
        release.set()
        assert durable.result(5) and blocker.result(5)
    finally:
        committer.stop()
    # One sync per batch holding a durable write; the blocker shared its batch or had none.
    assert committer.syncs == len(watching.answered_at_sync) >= 1
    assert not watching.answered_at_sync[-1][1]  # the durable write was not answered before its sync


def _last_txn(env: lmdb.Environment) -> int:
    return int(env.info()["last_txnid"])


def test_a_lone_write_that_fails_after_writing_leaves_no_trace_and_no_commit(
    env_dbs: tuple[lmdb.Environment, Dbs],
) -> None:
    """A write alone in its batch runs in the outer transaction: its refusal must undo what it wrote."""
    env, dbs = env_dbs
    watching = _SyncWatchingEnv(env)
    published: list[store_pb2.ChangeEvent] = []
    committer = Committer(cast("lmdb.Environment", watching), dbs, lambda events, tokens: published.extend(events))

    def half_then_refuse(ctx: WriteContext) -> None:
        ctx.txn.put(b"half", b"1", db=ctx.dbs.meta)
        ctx.events.append(store_pb2.ChangeEvent(mailbox_id=1, modseq=1))
        raise InvalidArgument("refused after a write")

    def half_then_crash(ctx: WriteContext) -> None:
        ctx.txn.put(b"crash", b"1", db=ctx.dbs.meta)
        raise RuntimeError("a bug")

    committer.start()
    try:
        before = _last_txn(env)
        with pytest.raises(InvalidArgument, match="refused after a write"):
            committer.run(None, half_then_refuse)  # durable by default: still no sync for a refusal
        with pytest.raises(StoreError, match="write operation failed: RuntimeError"):
            committer.run(None, half_then_crash)
        assert _last_txn(env) == before  # aborted, not committed: no fsync paid for a refusal
        assert watching.answered_at_sync == [] and committer.syncs == 0
        # The next lone write commits as usual.
        assert committer.run(None, lambda ctx: ctx.txn.put(b"next", b"1", db=ctx.dbs.meta))
        assert _last_txn(env) == before + 1 and committer.syncs == 1
    finally:
        committer.stop()
    with env.begin() as txn:
        assert txn.get(b"half", db=dbs.meta) is None and txn.get(b"crash", db=dbs.meta) is None
        assert txn.get(b"next", db=dbs.meta) == b"1"
    assert published == []  # no event from a refused write


def test_a_lone_write_with_a_stale_epoch_writes_nothing(env_dbs: tuple[lmdb.Environment, Dbs]) -> None:
    """The epoch check of a lone write happens in the transaction it would commit."""
    env, dbs = env_dbs
    committer = Committer(env, dbs, lambda events, tokens: None)
    committer.start()
    try:
        committer.run(None, lambda ctx: fencing.fence(ctx.txn, ctx.dbs, 4), needs_writable=False)
        before = _last_txn(env)
        with pytest.raises(FailedPrecondition, match="fenced"):
            committer.run(3, lambda ctx: ctx.txn.put(b"stale", b"1", db=ctx.dbs.meta))
        assert _last_txn(env) == before
    finally:
        committer.stop()
    with env.begin() as txn:
        assert txn.get(b"stale", db=dbs.meta) is None


def test_a_refused_durable_write_does_not_make_its_batch_pay_the_meta_sync(
    env_dbs: tuple[lmdb.Environment, Dbs],
) -> None:
    """Only a batch with a durable write that succeeded flushes the meta page (a refusal is not a promise)."""
    env, dbs = env_dbs
    watching = _SyncWatchingEnv(env)
    committer = Committer(cast("lmdb.Environment", watching), dbs, lambda events, tokens: None)
    release = threading.Event()

    def refuse(ctx: WriteContext) -> None:
        raise InvalidArgument("no")

    committer.start()
    try:
        blocker = committer.submit(None, lambda ctx: release.wait(5), durable=False)
        flag = committer.submit(None, lambda ctx: ctx.txn.put(b"f", b"1", db=ctx.dbs.meta), durable=False)
        refused = committer.submit(None, refuse)  # durable by default
        release.set()
        assert blocker.result(5) and flag.result(5)
        with pytest.raises(InvalidArgument):
            refused.result(5)
    finally:
        committer.stop()
    assert committer.syncs == 0 and watching.answered_at_sync == []
    with env.begin() as txn:
        assert txn.get(b"f", db=dbs.meta) == b"1"


def test_a_lone_write_runs_in_the_calling_thread_when_the_committer_is_idle(
    env_dbs: tuple[lmdb.Environment, Dbs],
) -> None:
    env, dbs = env_dbs
    published: list[store_pb2.ChangeEvent] = []
    answered: list[store_pb2.ChangeEvent] = []
    committer = Committer(env, dbs, lambda events, tokens: published.extend(events), after_answers=answered.extend)
    ran_in: list[int] = []

    def put(ctx: WriteContext) -> str:
        ran_in.append(threading.get_ident())
        ctx.txn.put(b"here", b"v", db=dbs.meta)
        ctx.events.append(store_pb2.ChangeEvent(mailbox_id=1, modseq=7))
        return "done"

    committer.start()
    writes = LoneWriter()
    try:
        fut = committer.submit(None, put, here=writes)
        # Done on return: committed, durable (the meta page synced) and published by this thread.
        assert fut.done() and fut.result() == "done"
        assert ran_in == [threading.get_ident()]
        assert [e.modseq for e in published] == [7]
        assert committer.batches_here == 1 and committer.batches == 1 and committer.syncs == 1
        # What nobody waits for (the indexer's wake-up) waits until the caller has answered.
        assert answered == []
        writes.run_later()
        assert [e.modseq for e in answered] == [7]
        # Queued (not offered `here`): the committer's thread calls it after resolving the future.
        assert committer.submit(None, put).result(5) == "done"
        assert [e.modseq for e in answered] == [7, 7]
        with env.begin() as txn:
            assert txn.get(b"here", db=dbs.meta) == b"v"
        # A refusal in the caller's thread: nothing committed, the error on the future.
        committer.run(None, lambda ctx: fencing.fence(ctx.txn, ctx.dbs, 2), needs_writable=False)
        refused = committer.submit(1, put, here=writes)
        with pytest.raises(FailedPrecondition, match="fenced"):
            refused.result(0)
    finally:
        committer.stop()
        writes.close()
    # After stop nothing runs, here or queued.
    late_writer = LoneWriter()
    late = committer.submit(None, put, here=late_writer)
    late_writer.close()
    with pytest.raises(StoreError, match="shutting down"):
        late.result(0)


def test_a_write_that_finds_a_batch_running_is_queued_and_shares_the_next_commit(
    env_dbs: tuple[lmdb.Environment, Dbs],
) -> None:
    env, dbs = env_dbs
    committer = Committer(env, dbs, lambda events, tokens: None)
    release, holding = threading.Event(), threading.Event()
    ran_in: list[int] = []

    def blocker(ctx: WriteContext) -> None:
        holding.set()
        release.wait(5)

    def put(key: bytes) -> Callable[[WriteContext], bytes]:
        def op(ctx: WriteContext) -> bytes:
            ran_in.append(threading.get_ident())
            ctx.txn.put(key, b"v", db=dbs.meta)
            return key

        return op

    committer.start()
    writes = LoneWriter()
    try:
        first = committer.submit(None, blocker)
        assert holding.wait(5)
        # The committer holds the writer lock: these queue, even the one offered `here`.
        queued = [committer.submit(None, put(b"a"), here=writes), committer.submit(None, put(b"b"))]
        assert not queued[0].done()
        release.set()
        first.result(5)
        assert [f.result(5) for f in queued] == [b"a", b"b"]
    finally:
        committer.stop()
        writes.close()
    assert threading.get_ident() not in ran_in  # both ran in the committer's thread
    assert committer.batches_here == 0 and committer.batches == 2  # the blocker's, then one for both
