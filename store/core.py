"""The store's core in one process: LMDB environment, committer, change feed, login cache.

Reads run in the caller's thread in a read transaction (holding the map
gate); writes go through the committer (group commit) and return only after
their commit is durable.
"""

from __future__ import annotations

import logging
import pathlib
import shutil
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeVar

import lmdb

from mailha_api import store_pb2
from store.changefeed import ChangeFeed, Origin
from store.committer import Committer, WriteContext
from store.compaction import shared_lock
from store.delivery_dedupe import DEFAULT_WINDOW, DeliveryDedupe
from store.environment import open_dbs, open_environment, rebind_dbs
from store.fulltext import FullTextIndex
from store.fulltext_worker import IndexerProcess
from store.layout import lmdb_dir
from store.mapgate import MapGate
from store.passwords import CredentialCache
from store.schema import FORMAT_KEY, FORMAT_VERSION, U64, check_format

log = logging.getLogger("mailha.store")
T = TypeVar("T")
MIB = 1024 * 1024


@dataclass(frozen=True)
class StoreOptions:
    data_dir: pathlib.Path
    max_message_size: int = 20 * MIB
    default_quota: int = 0
    # Address space, not disk: the file grows as pages are used. A large start means the
    # map rarely has to grow, and growing waits for open readers (a slow Fetch) to finish.
    map_size: int = 4096 * MIB
    max_batch: int = 256
    max_readers: int = 4096  # above the gRPC worker ceiling: every reader holds a slot
    watch_queue_limit: int = 1000
    delivery_dedupe_window: float = DEFAULT_WINDOW  # seconds an LMTP retry is recognised (store/delivery_dedupe.py)
    # Index bodies for SEARCH TEXT/BODY in a child process (store/fulltext_worker.py).
    # Off by default in-process (tests); `mailha store serve` turns it on (store/server.py).
    fulltext: bool = False
    # Reopen LMDB when quiet once a commit wrote more pages than this, to give back the
    # dirty pages LMDB keeps (store/committer.py, "Reopening"); 0: never. Off in-process,
    # where callers (tests, tools) may hold `env` across writes; `mailha store serve` sets it.
    reopen_after_pages: int = 0


class StoreCore:
    """Environment, committer, change feed and login cache; read and write plumbing."""

    def __init__(self, options: StoreOptions) -> None:
        self.options = options
        options.data_dir.mkdir(parents=True, exist_ok=True)
        # Shared by every store process on this directory; `mailha store compact` needs it alone.
        self._dir_lock = shared_lock(options.data_dir)
        self.spool_dir = options.data_dir / "spool"
        # Left-overs of appends that were in flight when a process died.
        shutil.rmtree(self.spool_dir, ignore_errors=True)
        self.spool_dir.mkdir(mode=0o700)
        # The indexer runs in a child process (store/fulltext_worker.py: off the GIL the
        # deliveries' threads hand off through), forked before this process opens LMDB or
        # SQLite (both keep per-process bookkeeping a child must not inherit) or starts a
        # thread; None: SEARCH TEXT/BODY scan above the watermark.
        self.indexer = IndexerProcess.start(options.data_dir) if options.fulltext else None
        self.env = open_environment(
            lmdb_dir(options.data_dir), map_size=options.map_size, max_readers=options.max_readers
        )
        self._map_size = options.map_size
        stale = self.env.reader_check()
        if stale:
            log.info("reclaimed %d stale LMDB reader slots", stale)
        self.dbs = open_dbs(self.env)
        self.dedupe = DeliveryDedupe(self.env, options.delivery_dedupe_window)
        with self.env.begin(write=True) as txn:
            check_format(txn.get(FORMAT_KEY, db=self.dbs.meta), str(options.data_dir))
            txn.put(FORMAT_KEY, U64.pack(FORMAT_VERSION), db=self.dbs.meta)
        self.env.sync(True)  # the schema writes above bypass the committer: make them durable
        self.feed = ChangeFeed(options.watch_queue_limit)
        self.gate = MapGate()
        self.fulltext = FullTextIndex(options.data_dir / "fulltext.sqlite")
        if self.indexer is not None:
            self.indexer.ready()  # it opens LMDB and SQLite only now (store/fulltext_worker.py)
        self.committer = Committer(
            self.env,
            self.dbs,
            self._published,
            options.max_batch,
            self.gate,
            after_answers=self._answered,
            reopen=self._reopen_environment if options.reopen_after_pages else None,
            reopen_after_pages=options.reopen_after_pages,
        )
        self.logins = CredentialCache()
        self._decoy: str | None = None
        self.committer.start()

    def close(self) -> None:
        self.feed.close_all()
        self.committer.stop()
        if self.indexer is not None:
            self.indexer.close()
        self.fulltext.close()
        self.env.close()
        self._dir_lock.close()

    # ---- plumbing ---------------------------------------------------------

    def _published(self, events: list[store_pb2.ChangeEvent], tokens: list[str]) -> None:
        self.feed.publish(events, tokens)

    def _answered(self, events: list[store_pb2.ChangeEvent]) -> None:
        """After the writers of a batch have their answers: wake the full-text indexer (a pipe
        write that wakes another process; nobody waits for it)."""
        added = [e.mailbox_id for e in events if e.added]
        if self.indexer is not None and added:
            self.indexer.wake(added)

    def _reopen_environment(self) -> lmdb.Environment:
        """Close LMDB and open it again, for the committer, with no transaction of this process
        open: what the closed environment kept (its freed dirty pages) is freed. `self.dbs`, the
        object every part of the store holds, and the dedupe tables take the new handles."""
        try:
            self._map_size = int(self.env.info()["map_size"])  # it may have grown since the start
        except lmdb.Error:
            pass  # closed already: an earlier reopen failed after closing it
        self.env.close()
        self.env = open_environment(
            lmdb_dir(self.options.data_dir), map_size=self._map_size, max_readers=self.options.max_readers
        )
        rebind_dbs(self.env, self.dbs)
        self.dedupe.bind(self.env)
        return self.env

    def read(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        while True:
            try:
                with self.gate.reading(), self.env.begin() as txn:
                    return fn(txn)
            except lmdb.MapResizedError:
                self._adopt_map_size()

    def _adopt_map_size(self) -> None:
        """Another process grew the map: take its size (no transaction may be open)."""
        self.gate.exclusive(lambda: self.env.set_mapsize(0))

    def write(self, epoch: int, fn: Callable[[WriteContext], T], *, durable: bool = True) -> T:
        """Run `fn` in the group commit; `durable=False` only for flag-like changes (see committer)."""
        return self.committer.run(epoch, fn, durable=durable)

    def submit_write(
        self, epoch: int, fn: Callable[[WriteContext], T], *, durable: bool = True, origin: Origin | None = None
    ) -> Future[T]:
        """`write` without waiting: the future resolves once the commit is (as `durable`) done.
        `origin`: a Writes call's feed token (committer.submit)."""
        return self.committer.submit(epoch, fn, durable=durable, origin=origin)
