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
of the mailboxes that received messages to its stdin (8 bytes each, little
endian, at most PIPE_BUF bytes per write, so each write arrives whole; id 0 asks
for a sweep of every mailbox, sent after a write the full pipe refused); end of
file on stdin (the store closed it, or died) stops it between two batches.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import select
import struct
import subprocess
import sys
import threading
from typing import IO, Final

from store.compaction import shared_lock
from store.fulltext import FullTextIndex, Wakes
from store.reader import LocalReader

log = logging.getLogger(__name__)
NICENESS: Final = 10  # below the store, lmtpd and imapd: deliveries and commands go first
STOP_TIMEOUT: Final = 30.0  # seconds close() waits for the current batch to end
ID: Final = struct.Struct("<Q")
SWEEP: Final = 0  # not a mailbox id (they start at 1): index every mailbox
IDS_PER_WRITE: Final = select.PIPE_BUF // ID.size  # a write of at most PIPE_BUF bytes is atomic


class IndexerProcess:
    """The store's handle on its indexer child."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        stdin = proc.stdin
        assert stdin is not None
        self._stdin: IO[bytes] = stdin
        self._lost = False  # a wake-up did not fit the pipe: the next one asks for a sweep
        os.set_blocking(stdin.fileno(), False)

    @classmethod
    def start(cls, data_dir: pathlib.Path) -> IndexerProcess:
        argv = [sys.executable, "-m", "store.fulltext_worker", str(data_dir)]
        # stdout/stderr are the store's own (its log); stdin is the wake-up pipe.
        return cls(subprocess.Popen(argv, stdin=subprocess.PIPE, close_fds=True))

    @property
    def pid(self) -> int:
        return self._proc.pid

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
                os.write(self._stdin.fileno(), b"".join(ID.pack(i) for i in part))
            self._lost = False
        except BlockingIOError:
            self._lost = True
        except (BrokenPipeError, ValueError):
            pass  # the child is gone or closing: queries scan what is not indexed

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._stdin.close()
        try:
            self._proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("full-text indexer (pid %d) did not stop in %.0f s; killed", self._proc.pid, STOP_TIMEOUT)
            self._proc.kill()
            self._proc.wait()


def _watch_stdin(wakes: Wakes, stop: threading.Event) -> None:
    """Mailbox ids read from stdin go to `wakes` (SWEEP: every mailbox); end of file sets `stop`."""
    fd = sys.stdin.fileno()
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


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m store.fulltext_worker DATA_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    data_dir = pathlib.Path(argv[0])
    os.nice(NICENESS)
    lock = shared_lock(data_dir)
    reader = LocalReader(data_dir)
    index = FullTextIndex(data_dir / "fulltext.sqlite")
    wakes, stop = Wakes(), threading.Event()
    wakes.sweep()  # whatever was appended while no indexer ran
    threading.Thread(target=_watch_stdin, args=(wakes, stop), name="wake-pipe", daemon=True).start()
    try:
        index.run(reader.env, reader.dbs, wakes, stop)
    finally:
        index.close()
        reader.close()
        lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
