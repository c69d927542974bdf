"""`mailha store compact`: an offline copy of the LMDB environment with its free pages dropped.

LMDB reuses the pages that expunges free (the file does not grow again until
they are used up) but never gives them back to the file system. Compaction
writes a compacted copy (`env.copy(compact=True)`) beside the environment and
swaps it in. It is offline: every store process holds a shared lock on
`DATA/store.lock` while it runs (store/core.py), and compaction takes that
lock exclusively, so it refuses while a store serves the directory and no
store can start on it until the swap is done.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import lmdb

from store.errors import FailedPrecondition
from store.layout import data_file, lmdb_dir
from store.schema import MAX_DBS

LOCK_NAME = "store.lock"


def shared_lock(data_dir: pathlib.Path) -> IO[bytes]:
    """Held by a serving store for its lifetime (released when the file is closed or the process dies)."""
    f = open(data_dir / LOCK_NAME, "a+b")  # noqa: SIM115 - held open for the store's lifetime
    fcntl.flock(f.fileno(), fcntl.LOCK_SH)
    return f


@dataclass(frozen=True)
class CompactResult:
    before_bytes: int
    after_bytes: int
    seconds: float
    old_dir: pathlib.Path | None  # kept when asked


@contextlib.contextmanager
def exclusive(data_dir: pathlib.Path) -> Iterator[None]:
    """The directory to oneself (no store runs on it, none can start); FailedPrecondition if one runs."""
    if not data_file(data_dir).exists():
        raise FailedPrecondition(f"no store environment in {data_dir}")
    with open(data_dir / LOCK_NAME, "a+b") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FailedPrecondition(f"a store is running on {data_dir}: stop it first") from None
        yield


def compact(data_dir: pathlib.Path, *, keep_old: bool = False) -> CompactResult:
    env_dir = lmdb_dir(data_dir)
    with exclusive(data_dir):
        start = time.monotonic()
        before = (env_dir / "data.mdb").stat().st_size
        new_dir = data_dir / "lmdb.compacting"
        shutil.rmtree(new_dir, ignore_errors=True)  # left by an interrupted run
        new_dir.mkdir()
        env = lmdb.open(str(env_dir), max_dbs=MAX_DBS, readonly=True, lock=False, subdir=True)
        try:
            env.copy(str(new_dir), compact=True)
        finally:
            env.close()
        _fsync(new_dir / "data.mdb")
        old_dir = data_dir / f"lmdb.old-{int(time.time())}"
        env_dir.rename(old_dir)
        new_dir.rename(env_dir)
        _fsync(data_dir)
        if not keep_old:
            shutil.rmtree(old_dir)
        after = (env_dir / "data.mdb").stat().st_size
        return CompactResult(before, after, time.monotonic() - start, old_dir if keep_old else None)


def _fsync(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
