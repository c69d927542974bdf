"""What every long-running mailha process sets up first: file modes and malloc.

- umask 077: every file a service creates (LMDB data, lock file, sockets,
  spool files, logs, pid and state files) is 0600 and every directory 0700,
  whoever creates it and whatever mode the code asks for.
- glibc malloc: allocations of 1 MiB and more (a password hash takes 19 MiB)
  are always mmap'd and go back to the system when freed, and at most two
  arenas exist; without this, a burst of concurrent hashes leaves hundreds of
  MiB in per-thread arenas for the life of the process. Up to TRIM_THRESHOLD of
  free memory stays at the top of a heap: with glibc's 128 KiB (fixed once the
  mmap threshold is set), a FETCH of a 1 MiB body gave back the four 256 KiB
  chunks it had decompressed and faulted the pages in again on the next one
  (issue 13). `release_free_memory` hands the rest of the free heap back
  (malloc_trim), the kept top included.

No-ops on a C library without these calls (not glibc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pathlib

SERVICE_UMASK = 0o077
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 1024 * 1024
TRIM_THRESHOLD = 4 * 1024 * 1024
ARENA_MAX = 2


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()
# jemalloc's control call when it is the process's allocator (nodeconf.services.ALLOCATOR_ENV).
_MALLCTL = getattr(ctypes.CDLL(None), "mallctl", None)
_ALL_ARENAS = b"arena.4096.purge"  # MALLCTL_ARENAS_ALL: every arena's unused dirty pages


def start_service_process() -> None:
    """Call first thing in a service's main (before it creates any file or thread)."""
    os.umask(SERVICE_UMASK)
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        _LIBC.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        _LIBC.mallopt(_M_ARENA_MAX, ARENA_MAX)


def release_free_memory() -> None:
    """Give free heap pages back to the system (after a burst of large allocations).

    Under jemalloc the pages freed since its last decay step go back at once: without a
    background thread it purges only when the process allocates, and an idle one does not."""
    if _MALLCTL is not None:
        _MALLCTL(_ALL_ARENAS, None, None, None, 0)
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


LOG_MODE = 0o600


def make_private_dirs(*dirs: pathlib.Path) -> None:
    """Create each directory 0700, and narrow one an older version left wider."""
    for d in dirs:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        if d.stat().st_mode & 0o077:
            os.chmod(d, 0o700)


def make_private_files(*files: pathlib.Path) -> None:
    """Narrow existing files (e.g. LMDB's data.mdb from an older version) to 0600."""
    for f in files:
        try:
            if f.stat().st_mode & 0o077:
                os.chmod(f, 0o600)
        except FileNotFoundError:
            pass


def open_log(path: pathlib.Path) -> int:
    """An append-only fd on a service's log (created 0600; a wider one from an older
    version is narrowed; a symlink as the file or its directory is refused: the
    directory may sit inside one the service user owns), for handing to a child."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path.name, flags, LOG_MODE, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    if os.fstat(fd).st_mode & 0o077:
        os.fchmod(fd, LOG_MODE)
    return fd


def write_private_text(path: pathlib.Path, text: str) -> None:
    """Replace `path`'s content with `text`, the file 0600 whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)
