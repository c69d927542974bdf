"""Group commit: one thread owns every LMDB write transaction.

Write handlers submit an operation (a function of a WriteContext) and block
on its future. The committer drains the queue up to a batch limit, runs each
operation in a nested transaction so a failing one (a domain error) is
rolled back alone, commits the outer transaction (one fsync for the whole
batch), and only then resolves the futures and publishes change events.
Nothing is acknowledged before its commit is durable. An operation alone in
its batch (a quiet store, one session) runs in the outer transaction itself,
and a batch in which every operation failed is aborted, not committed: a
refusal costs no fsync.

Durability classes. The environment is opened with metasync=False (LMDB's
MDB_NOMETASYNC): a commit fsyncs its data pages but not the meta page that
points at them. LMDB documents that this "maintains database integrity, but
a system crash may undo the last committed transaction" (ACI without D).
So the committer calls env.sync(True) after every batch that holds a
successful durable operation (the default: appends, deliveries, fences, user and
mailbox changes, expunges...) and before any of that batch's futures
resolve, which makes it, and every transaction before it, fully durable.
Only a batch made entirely of operations submitted with durable=False
(flag changes, \\Recent claims) skips that second fsync: an OS crash (not a
process crash: the meta page is in the page cache) may undo it, and only
while it is the last transaction. Dovecot does not fsync flag changes at all.

A "flat" operation (a single append) promises that every error it raises
comes before its first write. It runs straight in the outer transaction
with the batch's write-back cache of records (store.batch_records): no
nested transaction, and its mailbox, quota, body counter and epoch are read
and written once per batch instead of once per append. Should a flat
operation fail in any other way, the batch is aborted and rerun with every
operation nested (safe mode), so the promise is all correctness rests on.

A lone write in the caller's thread. A thread that queued its write would wake
the committer (a futex wake, and the woken thread may wait for a core: the
machine this runs on has two) and then sleep until the committer answers. When
the committer is idle (nothing queued, no batch running), a caller that passes
`here` (its LoneWriter) runs its one write as a batch of one itself,
under the same writer lock the committer holds for each of its batches: one
batch at a time, in one thread at a time, with the same epoch check, commit,
meta-page sync, publishing and answer, in the same order. Anything that finds
the lock held or the queue non-empty is queued as before, so writes that come
together still share a commit. The local write socket passes `here` for a
connection's only write in flight (store/local_writes.py): one LMTP
connection's delivery is then read, applied, committed and answered by one
thread of the store.

What nobody waits for comes after the answers: `after_answers` (the store's
wake-up of its full-text indexer, a pipe write that wakes another process) runs
once every future of the batch is resolved, and for a lone write once its
caller has sent the reply (`LoneWriter.run_later`).

Reopening. LMDB does not give back the pages of a write transaction's dirty
list: at commit it puts every single page on the environment's own free list
(`me_dpages`, mdb_dpage_free) for the next transactions, and frees that list
only when the environment closes. So the store holds, for as long as it runs,
4 KiB for every page the largest transaction since it opened dirtied: a STORE
piece of 10,000 messages, a COPY of 1,000, a group-committed batch of 256
appends (issue 17: RssAnon 1.4-1.5x its idle size after the 50,000-message
benchmark). The committer counts the pages each commit wrote (with
writemap=False LMDB writes every dirty page with pwrite(2) at commit: the
bytes its thread wrote meanwhile, from /proc/thread-self/io) and, once one
wrote more than `reopen_after_pages`, closes and reopens the environment the
next time no write has come for an idle tick and no read transaction of the
process is open (the map gate, held back for at most REOPEN_WAIT): between
batches, so no write transaction is open either. The store's Dbs object and
the dedupe tables are rebound to the new handles (store/core.py); readers in
other processes (imapd's LocalReader, the full-text child) are unaffected.
The same files are reopened with the same flags: durability is unchanged.
Should the reopen fail, writes are refused as unavailable and the reopen is
retried before each batch and at each idle tick.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import lmdb

from mailha_api import store_pb2
from store import fencing
from store.batch_records import BatchRecords, DirectRecords, Records
from store.changefeed import Origin
from store.errors import Internal, StorageFull, StoreError, Unavailable
from store.mapgate import MapGate
from store.schema import Dbs

log = logging.getLogger("mailha.store.committer")
T = TypeVar("T")


class WriteContext:
    """What an operation sees: its (nested) transaction and where to put events."""

    def __init__(self, txn: lmdb.Transaction, dbs: Dbs, records: Records | None = None) -> None:
        self.txn = txn
        self.dbs = dbs
        # The records appends rewrite: the batch's cache for flat operations, else direct.
        self.records: Records = records if records is not None else DirectRecords(txn, dbs)
        self.events: list[store_pb2.ChangeEvent] = []
        self.after_commit: list[Callable[[], None]] = []


@dataclass
class _Op:
    fn: Callable[[WriteContext], Any]
    epoch: int | None  # None: no epoch check (Fence does its own)
    needs_writable: bool
    flat: bool = False  # raises only before its first write: may skip the nested transaction
    durable: bool = True  # False: an OS crash may undo it while it is the last transaction
    origin: Origin | None = None  # a Writes call with a feed token: its events go back with the reply
    future: Future[Any] = field(default_factory=Future)


# Wakes the committer loop with nothing to do (periodic chores only).
_IDLE: Any = object()


READER_CHECK_INTERVAL = 1.0  # seconds between sweeps for readers of dead processes; also the idle tick
# `mailha store serve` reopens the environment once a commit wrote more pages than this
# (see "Reopening" above): what LMDB may keep after it is at most this many pages (2 MiB),
# and a quiet store with small writes (a flag change writes 6-8 pages) is never reopened.
REOPEN_AFTER_PAGES = 512
REOPEN_WAIT = 0.05  # seconds a reopen waits for this process's open read transactions to end


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC/EDQUOT from LMDB or the spool (lmdb.DiskError carries no errno)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left on device" in text or "Disk quota exceeded" in text


class ThreadWrites:
    """Bytes the calling thread has passed to write(2) and its kin: `wchar` of /proc/thread-self/io.

    Create and read it in the thread it counts. None where /proc does not tell."""

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open("/proc/thread-self/io", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._fd = None

    def total(self) -> int | None:
        if self._fd is None:
            return None
        try:
            text = os.pread(self._fd, 512, 0)  # offset 0: the kernel renders the counters afresh
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(b"wchar:"):
                return int(line[6:])
        return None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class LoneWriter:
    """A thread that may run its own write as a batch of one (`Committer.submit(here=)`): its
    written-bytes counter, and what such a batch leaves for after the caller has answered
    (`run_later`). Create, use and close it in that thread."""

    def __init__(self) -> None:
        self.writes = ThreadWrites()
        self._later: list[Callable[[], None]] = []

    def defer(self, fn: Callable[[], None]) -> None:
        self._later.append(fn)

    def run_later(self) -> None:
        later, self._later = self._later, []
        for fn in later:
            fn()

    def close(self) -> None:
        self.writes.close()


class _GrowMap(Exception):
    """An operation hit MapFullError: grow the map and rerun the batch."""


class _RerunSafely(Exception):
    """A flat operation failed after it may have written: rerun the batch all nested."""


class Committer:
    def __init__(
        self,
        env: lmdb.Environment,
        dbs: Dbs,
        publish: Callable[[list[store_pb2.ChangeEvent], list[str]], None],
        max_batch: int = 256,
        gate: MapGate | None = None,
        *,
        after_answers: Callable[[list[store_pb2.ChangeEvent]], None] | None = None,
        reopen: Callable[[], lmdb.Environment] | None = None,
        reopen_after_pages: int = REOPEN_AFTER_PAGES,
        idle_interval: float = READER_CHECK_INTERVAL,
    ) -> None:
        """`reopen` closes the environment and opens it again (store/core.py); None: never.
        `after_answers`: called with a committed batch's events once its writers are answered."""
        self._after_answers = after_answers
        self._gate = gate if gate is not None else MapGate()
        self._env = env
        self._page_size = int(env.stat()["psize"])
        self._reopen = reopen
        self._reopen_after_pages = reopen_after_pages
        self._idle_interval = idle_interval
        self._env_lost = False  # a reopen failed: the environment may be closed
        self._reopen_failures = 0  # in a row
        self._writes: ThreadWrites | None = None  # the committer thread's, made in it
        self._dbs = dbs
        self._publish = publish
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="store-committer", daemon=True)
        # Held by the thread running a batch (the committer's, or a lone writer's: `submit(here=)`),
        # and by the committer's chores (reader check, reopen): one write transaction at a time.
        self._writer_lock = threading.Lock()
        self._last_write = 0.0  # time.monotonic() of the last batch, wherever it ran
        self._stopping = False
        self.writable = True
        # Statistics (read by tests and the benchmark): batches, operations, seconds in fsync'd commits.
        self.batches = 0
        self.ops = 0
        self.commit_seconds = 0.0
        self.apply_seconds = 0.0
        self.safe_reruns = 0
        self.syncs = 0  # env.sync calls that made a batch with a durable operation durable
        self.largest_commit_pages = 0  # pages the largest commit since the environment opened wrote
        self.reopens = 0
        self.reopen_seconds = 0.0
        self.batches_here = 0  # of `batches`, those run in the submitting thread

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish what is queued, then end the thread."""
        self._stopping = True
        self._queue.put(None)
        self._thread.join()
        with self._writer_lock:
            pass  # a lone write that took the lock before `_stopping` was set has finished

    def submit(
        self,
        epoch: int | None,
        fn: Callable[[WriteContext], T],
        *,
        needs_writable: bool = True,
        flat: bool = False,
        durable: bool = True,
        origin: Origin | None = None,
        here: LoneWriter | None = None,
    ) -> Future[T]:
        """Queue `fn`; `flat` only for a function whose every error comes before its first write.

        `durable=False` only for a write whose loss in an OS crash is acceptable (flag changes).
        `origin`: the write came over a Writes call with a feed token; its events are added to
        `origin.events` before the future resolves and left off that token's Watch streams.
        `here`: the calling thread's LoneWriter; with it, if the committer is idle, the write
        runs as a batch of one in this thread and its future is done on return (see
        "A lone write in the caller's thread" above); the caller then answers and calls
        `here.run_later()`.
        """
        op = _Op(fn, epoch, needs_writable, flat and epoch is not None, durable, origin)
        if self._stopping:
            op.future.set_exception(Unavailable("the store is shutting down; retry on the new active node"))
        elif needs_writable and not self.writable:
            op.future.set_exception(_suspended())
        elif here is None or not self._run_here(op, here):
            self._queue.put(op)
        return cast("Future[T]", op.future)

    def _run_here(self, op: _Op, lone: LoneWriter) -> bool:
        """Run `op` alone in this thread if no batch is running or queued; False: queue it."""
        if not self._queue.empty() or not self._writer_lock.acquire(blocking=False):
            return False
        try:
            if self._env_lost or not self._queue.empty():
                return False  # the committer reopens first / came in between: keep the order
            if self._stopping:
                op.future.set_exception(Unavailable("the store is shutting down; retry on the new active node"))
                return True
            self.batches_here += 1
            self._run_batch([op], lone.writes, lone.defer)
            return True
        finally:
            self._writer_lock.release()

    def run(
        self, epoch: int | None, fn: Callable[[WriteContext], T], *, needs_writable: bool = True, durable: bool = True
    ) -> T:
        return self.submit(epoch, fn, needs_writable=needs_writable, durable=durable).result()

    # ---- the thread -------------------------------------------------------

    def _loop(self) -> None:
        self._writes = ThreadWrites()
        try:
            self._serve()
        finally:
            self._writes.close()

    def _serve(self) -> None:
        next_reader_check = time.monotonic() + self._idle_interval
        while True:
            try:
                first = self._queue.get(timeout=self._idle_interval)
            except queue.Empty:
                first = None if self._stopping else _IDLE
            with self._writer_lock:
                if self._env_lost:
                    self._reopen_now()
                if time.monotonic() >= next_reader_check and not self._env_lost:
                    next_reader_check = time.monotonic() + self._idle_interval
                    self._reclaim_dead_readers()
                if first is _IDLE:
                    # No write for an idle tick (lone writes run in their own threads: ask the
                    # clock, not the queue): the moment to give back what a large one left.
                    quiet = time.monotonic() - self._last_write >= self._idle_interval
                    if quiet and self._reopen is not None and self.largest_commit_pages > self._reopen_after_pages:
                        self._reopen_now()
                    continue
                if first is None:
                    return
                batch = [first]
                stop_after = False
                while len(batch) < self._max_batch:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop_after = True
                        break
                    batch.append(nxt)
                assert self._writes is not None
                self._run_batch(batch, self._writes)
            if stop_after:
                return

    def _run_batch(
        self, batch: list[_Op], writes: ThreadWrites, defer: Callable[[Callable[[], None]], None] | None = None
    ) -> None:
        """Commit `batch` and settle every future; the caller holds the writer lock. `defer`:
        where `after_answers` goes (a lone writer runs it after its reply), else it runs here."""
        try:
            if self._env_lost:
                raise Unavailable("the store could not reopen its database; retry (see its log)")
            self._commit_batch(batch, writes, defer)
        except StoreError as exc:
            for op in batch:
                op.future.set_exception(exc)
        except Exception as exc:
            # The committer must never die: every later write would hang on its future.
            log.exception("group commit failed")
            for op in batch:
                if not op.future.done():
                    op.future.set_exception(Internal(f"group commit failed: {type(exc).__name__}: {exc}"))
        finally:
            self._last_write = time.monotonic()

    def _commit_batch(
        self, batch: list[_Op], writes: ThreadWrites, defer: Callable[[Callable[[], None]], None] | None
    ) -> None:
        safe = False
        while True:
            try:
                outcomes = self._try_batch(batch, safe, writes)
                break
            except _RerunSafely:
                self.safe_reruns += 1
                safe = True
            except _GrowMap:
                self._grow()
            except lmdb.MapResizedError:
                # Another process grew the map: adopt its size.
                self._gate.exclusive(lambda: self._env.set_mapsize(0))
            except (lmdb.Error, OSError) as exc:
                if not isinstance(exc, lmdb.Error) and not is_disk_full(exc):
                    raise
                failure: StoreError
                if is_disk_full(exc):
                    log.error("write transaction failed: the disk is full (%s)", exc)
                    failure = StorageFull(str(exc))
                else:
                    log.exception("write transaction failed")
                    failure = Internal(f"write transaction failed: {exc}")
                for op in batch:
                    op.future.set_exception(failure)
                return
        if any(op.durable and ok for op, (ok, _, _) in zip(batch, outcomes, strict=True)):
            # The commit fsynced the data pages, not the meta page (metasync=False): flush it
            # before anyone hears back. A failure here leaves the batch committed but of unknown
            # durability, so nobody is told it succeeded.
            try:
                self._env.sync(True)
            except (lmdb.Error, OSError) as exc:
                log.error("could not make a committed batch durable: %s", exc)
                # Committed and visible to readers: every watcher must see it too (the writers
                # hear of a failure, not of the events, so no feed token is honoured).
                committed = [event for ok, _, ctx in outcomes if ok and ctx is not None for event in ctx.events]
                if committed:
                    self._publish(committed, [])
                    if self._after_answers is not None:
                        self._after_answers(committed)
                for op in batch:
                    op.future.set_exception(Internal(f"could not make the write durable: {exc}"))
                return
            self.syncs += 1
        self.batches += 1
        self.ops += len(batch)
        # Durable now. Publish first, so by the time a writer has its answer every
        # watcher already has the event queued; then run callbacks and answer.
        events: list[store_pb2.ChangeEvent] = []
        tokens: list[str] = []
        for op, (ok, _, ctx) in zip(batch, outcomes, strict=True):
            if ok and ctx is not None and ctx.events:
                events.extend(ctx.events)
                # Carried by the reply (before the future resolves): off the writer's own Watch.
                carried = op.origin is not None and op.origin.take(ctx.events)
                tokens.extend([op.origin.token if carried and op.origin is not None else ""] * len(ctx.events))
        if events:
            self._publish(events, tokens)
        for op, (ok, value, ctx) in zip(batch, outcomes, strict=True):
            if ok:
                assert ctx is not None
                for callback in ctx.after_commit:
                    callback()
                op.future.set_result(value)
            else:
                op.future.set_exception(value)
        if events and self._after_answers is not None:
            after = functools.partial(self._after_answers, events)
            if defer is not None:
                defer(after)
            else:
                after()

    def _try_batch(
        self, batch: list[_Op], safe: bool, writes: ThreadWrites
    ) -> list[tuple[bool, Any, WriteContext | None]]:
        outcomes: list[tuple[bool, Any, WriteContext | None]] = []
        started = time.perf_counter()
        outer = self._env.begin(write=True)
        cache = BatchRecords(outer, self._dbs)
        # A write alone in its batch has no neighbour to protect: it runs in the outer
        # transaction itself, and a refusal aborts that (below). A nested transaction costs
        # LMDB a 3 MiB allocation (its dirty and free page lists) and a merge at its commit,
        # each write of a lone session paid it (issue 13).
        alone = len(batch) == 1
        try:
            for op in batch:
                if op.needs_writable and not self.writable:
                    outcomes.append((False, _suspended(), None))
                    continue
                if op.flat and not safe:
                    outcomes.append(self._run_flat(op, cache))
                    continue
                if alone:
                    outcomes.append(self._apply(op, outer))
                    continue
                # Anything else sees the real records (and may fence: the epoch is re-read after).
                _flush(cache)
                nested = self._env.begin(write=True, parent=outer)
                try:
                    outcome = self._apply(op, nested)
                except BaseException:
                    nested.abort()
                    raise
                if outcome[0]:
                    nested.commit()
                else:
                    nested.abort()
                outcomes.append(outcome)
            if not any(ok for ok, _, _ in outcomes):
                # Nothing to keep (a refused lone write may have written before it raised):
                # no commit, so no fsync for an answer that is a refusal.
                outer.abort()
                self.apply_seconds += time.perf_counter() - started
                return outcomes
            _flush(cache)
            t0 = time.perf_counter()
            written = writes.total()
            outer.commit()
            self.commit_seconds += time.perf_counter() - t0
            self._count_pages(written, writes.total())
            self.apply_seconds += t0 - started
        except BaseException:
            outer.abort()
            raise
        return outcomes

    def _apply(self, op: _Op, txn: lmdb.Transaction) -> tuple[bool, Any, WriteContext | None]:
        """Run `op` in `txn` after its epoch check; on a failed outcome the caller undoes `txn`."""
        ctx = WriteContext(txn, self._dbs)
        try:
            if op.epoch is not None:
                fencing.check_epoch(txn, self._dbs, op.epoch)
            return True, op.fn(ctx), ctx
        except StoreError as exc:
            return False, exc, None
        except lmdb.MapFullError:
            raise _GrowMap from None
        except Exception as exc:
            if is_disk_full(exc):
                raise  # the whole batch fails as StorageFull in _commit_batch
            log.exception("write operation failed")
            return False, Internal(f"write operation failed: {type(exc).__name__}: {exc}"), None

    def _run_flat(self, op: _Op, cache: BatchRecords) -> tuple[bool, Any, WriteContext | None]:
        assert op.epoch is not None
        ctx = WriteContext(cache.txn, self._dbs, cache)
        try:
            cache.check_epoch(op.epoch)
            return True, op.fn(ctx), ctx
        except StoreError as exc:
            return False, exc, None  # raised before any write: nothing to undo
        except lmdb.MapFullError:
            raise _GrowMap from None
        except lmdb.MapResizedError:
            raise
        except Exception as exc:
            if is_disk_full(exc):
                raise
            log.exception("flat write operation failed; rerunning the batch with nested transactions")
            raise _RerunSafely from None

    def _count_pages(self, written_before: int | None, written_after: int | None) -> None:
        """Note how many pages the commit just made wrote (every dirty page, overflow pages too)."""
        if written_before is None or written_after is None:
            return
        pages = (written_after - written_before) // self._page_size
        self.largest_commit_pages = max(self.largest_commit_pages, pages)

    def _reopen_now(self) -> None:
        """Close and reopen the environment, if no read transaction of this process stays open.

        Runs between batches in the committer thread, so no write transaction is open."""
        assert self._reopen is not None
        reopen = self._reopen
        largest = self.largest_commit_pages
        started = time.perf_counter()

        def close_and_open() -> None:
            self._env_lost = True  # until the new environment is open and its handles bound
            self._env = reopen()
            self._env_lost = False

        try:
            if not self._gate.exclusive_if_free(close_and_open, REOPEN_WAIT):
                return  # a reader is still open: at the next idle tick
        except Exception:
            self._reopen_failures += 1
            if self._reopen_failures % 100 == 1:  # retried before every batch: not a line each time
                log.exception(
                    "could not reopen the LMDB environment (%d attempts); writes are refused until it opens",
                    self._reopen_failures,
                )
            return
        self._reopen_failures = 0
        took = time.perf_counter() - started
        self.reopens += 1
        self.reopen_seconds += took
        self.largest_commit_pages = 0
        log.info(
            "reopened the LMDB environment in %.1f ms: the largest commit since it opened wrote %d pages, "
            "which LMDB kept for reuse until now",
            1000 * took,
            largest,
        )

    def _reclaim_dead_readers(self) -> None:
        """Free reader slots of processes that died inside a read transaction.

        A dead reader pins old pages: LMDB cannot reuse them and the file grows.
        LMDB only clears such slots when asked, so ask regularly, not just at start.
        """
        try:
            cleared = self._env.reader_check()
        except lmdb.Error:
            log.exception("reader check failed")
            return
        if cleared:
            log.warning("reclaimed %d reader slot(s) left by dead processes", cleared)

    def _grow(self) -> None:
        size = self._env.info()["map_size"]
        self._gate.exclusive(lambda: self._env.set_mapsize(size * 2))
        log.info("LMDB map full: grew it from %d to %d bytes", size, size * 2)


def _flush(cache: BatchRecords) -> None:
    try:
        cache.flush()
    except lmdb.MapFullError:
        raise _GrowMap from None


def _suspended() -> Unavailable:
    return Unavailable("writes are suspended on this node (SetWritable false); retry on the active node")
