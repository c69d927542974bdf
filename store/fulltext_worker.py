"""The full-text indexer as a child process of the store.

Why a process and not a thread: indexing costs ~1-2 ms of Python CPU per
message. In the store's own process it held the GIL while a delivery's RPC
thread and the committer waited for it (every hand-off between them waits
for the GIL), so one LMTP connection's deliveries slowed by about as much as
the indexing cost. In a process of its own, at a lower CPU priority, it
takes what the deliveries leave of the cores and never sits between a
delivery's threads.

The child reads LMDB as any reader beside the store does (`store.reader`),
writes only `DATA/fulltext.sqlite` (its watermarks keep it crash-consistent:
store/fulltext.py), and holds the data directory's shared lock like the store
(`mailha store compact` waits for both). The store wakes it by writing the ids
of the mailboxes that received messages to its wake-up pipe (8 bytes each, little
endian, at most PIPE_BUF bytes per write, so each write arrives whole; id 0 asks
for a sweep of every mailbox, sent after a write the full pipe refused); end of
file on the pipe (the store closed it, or died) stops it between two batches.
The child opens nothing until the store's first write (`ready`, a sweep), sent once
the store has created its environment and the full-text database: two processes
switching a new SQLite file to WAL at the same moment get "database is locked"
at once, without waiting (CI saw a store fail to start so).
It is forked, not executed: a store that dropped its privileges may not be
allowed to run its interpreter again (tests/test_hostile_proc_privdrop*.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import select
import signal
import struct
import sys
import threading
import time
from typing import Final

import lmdb

from store.compaction import shared_lock
from store.errors import Unavailable
from store.fulltext import FullTextIndex, Wakes
from store.reader import LocalReader

log = logging.getLogger(__name__)
NICENESS: Final = 10  # below the store, lmtpd and imapd: deliveries and commands go first
STOP_TIMEOUT: Final = 30.0  # seconds close() waits for the current batch to end
ID: Final = struct.Struct("<Q")
SWEEP: Final = 0  # not a mailbox id (they start at 1): index every mailbox
IDS_PER_WRITE: Final = select.PIPE_BUF // ID.size  # a write of at most PIPE_BUF bytes is atomic


class IndexerProcess:
    """The store's handle on its indexer child: its pid and the write end of its wake-up pipe."""

    def __init__(self, pid: int, wake_fd: int) -> None:
        self.pid = pid
        self._fd = wake_fd
        self._lost = False  # a wake-up did not fit the pipe: the next one asks for a sweep
        os.set_blocking(wake_fd, False)

    @classmethod
    def start(cls, data_dir: pathlib.Path) -> IndexerProcess:
        """Fork the indexer (no exec: a store that dropped its privileges may not be allowed
        to execute its interpreter again, and the child needs nothing it has not imported).
        Called before the store starts any thread or gRPC."""
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the store's code
            code = 1
            try:
                os.close(write_fd)
                code = _child(data_dir, read_fd)
            except BaseException:
                log.exception("full-text indexer failed")
            finally:
                os._exit(code)
        os.close(read_fd)
        return cls(pid, write_fd)

    def wake(self, mailbox_ids: list[int]) -> None:
        """These mailboxes received messages. Never blocks: when the pipe is full (the child
        is behind by thousands of wake-ups) the ids are dropped and the next wake-up asks
        for a sweep of every mailbox instead."""
        ids = sorted(set(mailbox_ids))
        if self._lost:
            ids.insert(0, SWEEP)
        try:
            for at in range(0, len(ids), IDS_PER_WRITE):
                part = ids[at : at + IDS_PER_WRITE]
                os.write(self._fd, b"".join(ID.pack(i) for i in part))
            self._lost = False
        except BlockingIOError:
            self._lost = True
        except (BrokenPipeError, OSError):
            pass  # the child is gone or closing: queries scan what is not indexed

    def ready(self) -> None:
        """The store has created LMDB and the full-text database: the child may open them
        (and index whatever was appended while no indexer ran)."""
        self._lost = True
        self.wake([])

    def close(self) -> None:
        """End of file on the pipe stops the child between two batches; wait for it."""
        with contextlib.suppress(OSError):
            os.close(self._fd)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
            if done:
                return
            time.sleep(0.02)
        log.warning("full-text indexer (pid %d) did not stop in %.0f s; killed", self.pid, STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)


def _child(data_dir: pathlib.Path, wake_fd: int) -> int:
    """The indexer process after the fork: only the pipe and the standard streams stay open
    (the store's lock, LMDB and socket descriptors are closed; its objects are never used)."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    os.closerange(3, wake_fd)
    os.closerange(wake_fd + 1, os.sysconf("SC_OPEN_MAX"))
    return _index(data_dir, wake_fd, wait_for_store=True)


def _watch_pipe(fd: int, wakes: Wakes, stop: threading.Event) -> None:
    """Mailbox ids read from `fd` go to `wakes` (SWEEP: every mailbox); end of file sets `stop`."""
    left = b""
    while True:
        try:
            data = os.read(fd, 64 * ID.size)
        except OSError:
            data = b""
        if not data:
            stop.set()
            wakes.event.set()
            return
        data, cut = left + data, (len(left) + len(data)) // ID.size * ID.size
        data, left = data[:cut], data[cut:]
        ids = [i for (i,) in ID.iter_unpack(data)]
        if SWEEP in ids:
            wakes.sweep()
        wakes.add(i for i in ids if i != SWEEP)


def _index(data_dir: pathlib.Path, wake_fd: int, *, wait_for_store: bool) -> int:
    """Index until end of file on `wake_fd`. With `wait_for_store`, open nothing before
    the first wake-up (the store's `ready`); without, start with a sweep."""
    os.nice(NICENESS)
    wakes, stop = Wakes(), threading.Event()
    if not wait_for_store:
        wakes.sweep()  # whatever was appended while no indexer ran
    threading.Thread(target=_watch_pipe, args=(wake_fd, wakes, stop), name="wake-pipe", daemon=True).start()
    wakes.event.wait()  # the store's ready (a sweep), or end of file
    if stop.is_set():
        return 0
    lock = shared_lock(data_dir)
    reader = _open_reader(data_dir, stop)
    if reader is None:
        lock.close()
        return 0
    index = FullTextIndex(data_dir / "fulltext.sqlite")
    try:
        index.run(reader.env, reader.dbs, wakes, stop)
    finally:
        index.close()
        reader.close()
        lock.close()
    return 0


def _open_reader(data_dir: pathlib.Path, stop: threading.Event) -> LocalReader | None:
    """The store's environment once the store (forked before it opened it) has created it and
    its databases; None if the store stopped first."""
    while not stop.is_set():
        try:
            return LocalReader(data_dir)
        except (Unavailable, lmdb.Error):
            stop.wait(0.05)
    return None


def main(argv: list[str]) -> int:
    """`python -m store.fulltext_worker DATA_DIR`: the indexer by hand, woken through stdin."""
    if len(argv) != 1:
        print("usage: python -m store.fulltext_worker DATA_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return _index(pathlib.Path(argv[0]), sys.stdin.fileno(), wait_for_store=False)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
