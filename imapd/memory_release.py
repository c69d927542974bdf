"""Hand freed heap memory back to the operating system once the process is idle.

A large FETCH, SEARCH or SORT allocates tens of megabytes of small Python
objects; once they are freed, glibc keeps the pages in the process's heap
unless asked with `malloc_trim`. `IdleRelease` collects and trims when the
last connection has closed, and again when the per-mailbox caches of the
last selected mailboxes are dropped (`ServerContext.forget_mailbox`), so an
idle imapd returns to (about) its idle size. A release asked for while
another ran a moment ago is deferred, not lost: the last close of a busy
minute is the one that matters.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Final

import trio

from nodeconf.service_process import release_free_memory

SETTLE_SECONDS: Final = 2.0  # wait this long after the last reason, and between two releases


def freeze_startup_heap() -> None:
    """Keep what exists at startup (modules, gRPC, protobuf descriptors: most of the heap)
    out of every later collection. A full collection otherwise walks all of it and stops
    every connection meanwhile: 35-90 ms pauses of the event loop with 300 sessions (issue 13).
    """
    gc.collect()
    gc.freeze()


def collect_and_trim() -> None:
    gc.collect()
    release_free_memory()


class IdleRelease:
    """Remembers that memory was freed; `run` releases it once `idle()` holds."""

    def __init__(self, settle: float = SETTLE_SECONDS, release: Callable[[], None] = collect_and_trim) -> None:
        self.settle = settle
        self._release = release
        self._wanted = trio.Event()
        self.releases = 0

    def note(self) -> None:
        """Something big was freed (a connection closed, a mailbox's caches dropped)."""
        self._wanted.set()

    async def run(self, idle: Callable[[], bool]) -> None:
        while True:
            await self._wanted.wait()
            await trio.sleep(self.settle)  # let the closing connections finish closing
            self._wanted = trio.Event()
            if idle():
                self._release()
                self.releases += 1
