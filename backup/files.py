"""Files of a backup: private modes, fsync, checksums, atomic directories.

A backup is written into a hidden temporary directory next to its final
place, every file and the directory are fsynced, and only then is it
renamed into place (and the parent fsynced). A crash leaves at most a
`.tmp-*` directory, which no reader takes for a backup.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import time
from collections.abc import Callable

FILE_MODE = 0o600
DIR_MODE = 0o700
TMP_PREFIX = ".tmp-"
READ_PIECE = 1024 * 1024
# Large copies are flushed every this many bytes: a running store's commit fsync then never
# waits behind a gigabyte of our dirty pages (on ext4 one fsync can flush other files' data).
SYNC_EVERY = 4 * 1024 * 1024


class PacedWriter:
    """Writes a large file with its sha256 computed on the way, fdatasync every SYNC_EVERY bytes.

    With `max_rate` (bytes/s) it sleeps to stay below it, leaving the disk idle
    between flushes for the store's commits.
    """

    def __init__(
        self, path: pathlib.Path, progress: Callable[[int], None] | None = None, *, max_rate: float | None = None
    ) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        self._max_rate = max_rate
        self._started = time.monotonic()
        self.digest = hashlib.sha256()
        self.size = 0
        self._unsynced = 0
        self._progress = progress

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        self.digest.update(data)
        self.size += len(data)
        self._unsynced += len(data)
        if self._unsynced >= SYNC_EVERY:
            os.fdatasync(self.fd)
            self._unsynced = 0
        if self._progress is not None:
            self._progress(len(data))
        if self._max_rate:
            ahead = self.size / self._max_rate - (time.monotonic() - self._started)
            if ahead > 0:
                time.sleep(ahead)

    def close(self) -> str:
        """fsync, close; return the sha256."""
        try:
            os.fsync(self.fd)
        finally:
            os.close(self.fd)
        return self.digest.hexdigest()


def private_dir(path: pathlib.Path) -> pathlib.Path:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)
    return path


def fsync_path(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: pathlib.Path, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(READ_PIECE):
            digest.update(piece)
            if progress is not None:
                progress(len(piece))
    return digest.hexdigest()


def write_private(path: pathlib.Path, data: bytes) -> None:
    """Write `data` to a 0600 file and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(path: pathlib.Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Replace a small file (manifest, metric file) so readers see the old or the new one."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    write_private(tmp, data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    fsync_path(path.parent)


def seal_directory(tmp: pathlib.Path, final: pathlib.Path) -> None:
    """Make every file private and durable, then move `tmp` to `final` in one rename."""
    for root, dirs, names in os.walk(tmp):
        for name in names:
            file = pathlib.Path(root, name)
            os.chmod(file, FILE_MODE)
            fsync_path(file)
        for name in dirs:
            os.chmod(pathlib.Path(root, name), DIR_MODE)
        os.chmod(root, DIR_MODE)
        fsync_path(pathlib.Path(root))
    os.rename(tmp, final)
    fsync_path(final.parent)


def remove_tree(path: pathlib.Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
