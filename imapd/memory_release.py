"""Hand freed heap memory back to the operating system when the last connection closes.

A large FETCH or SEARCH allocates tens of megabytes of small Python objects;
once they are freed, glibc keeps the pages in the process's heap unless asked
with `malloc_trim`. The server calls this when its connection count drops to
zero, so an idle imapd returns to (about) its idle size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import time
from typing import Final

_LIBC: Final = ctypes.util.find_library("c")
_EVERY: Final = 5.0  # seconds at least between two releases (a full collection is not free)
_last = [float("-inf")]


_M_ARENA_MAX: Final = -8


def limit_malloc_arenas(count: int = 2) -> None:
    """Fewer glibc arenas: each thread that allocates (gRPC, trio workers) may otherwise get
    its own heap, and freed memory scattered over many heaps is not given back."""
    if _LIBC is None:
        return
    try:
        ctypes.CDLL(_LIBC).mallopt(_M_ARENA_MAX, count)
    except (OSError, AttributeError):
        return


def freeze_startup_heap() -> None:
    """Keep what exists at startup (modules, gRPC, protobuf descriptors: most of the heap)
    out of every later collection. A full collection otherwise walks all of it and stops
    every connection meanwhile: 35-90 ms pauses of the event loop with 300 sessions (issue 13).
    """
    gc.collect()
    gc.freeze()


def release_free_memory() -> None:
    now = time.monotonic()
    if now - _last[0] < _EVERY:
        return
    _last[0] = now
    gc.collect()
    if _LIBC is None:
        return
    try:
        trim = ctypes.CDLL(_LIBC).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return
    trim(0)
