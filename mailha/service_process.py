"""What every long-running mailha process sets up first: file modes and malloc.

- umask 077: every file a service creates (LMDB data, lock file, sockets,
  spool files, logs, pid and state files) is 0600 and every directory 0700,
  whoever creates it and whatever mode the code asks for.
- glibc malloc: allocations of 1 MiB and more (a password hash takes 19 MiB)
  are always mmap'd and go back to the system when freed, and at most two
  arenas exist; without this, a burst of concurrent hashes leaves hundreds of
  MiB in per-thread arenas for the life of the process. `release_free_memory`
  hands the rest of the free heap back (malloc_trim).

No-ops on a C library without these calls (not glibc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

SERVICE_UMASK = 0o077
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 1024 * 1024
ARENA_MAX = 2


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def start_service_process() -> None:
    """Call first thing in a service's main (before it creates any file or thread)."""
    os.umask(SERVICE_UMASK)
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        _LIBC.mallopt(_M_ARENA_MAX, ARENA_MAX)


def release_free_memory() -> None:
    """Give free heap pages back to the system (after a burst of large allocations)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
