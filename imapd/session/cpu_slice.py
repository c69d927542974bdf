"""Yield the event loop during long loops, so one command cannot stall the others.

trio only switches tasks at checkpoints; a LIST over thousands of mailboxes
or a SEARCH over a big mailbox may run many milliseconds of pure Python
between them. `CpuSlice.tick()` is called once per item and checkpoints when
the slice is used up, keeping every other connection (and SIGTERM) served.
"""

from __future__ import annotations

import time
from typing import Final

import trio

SLICE_SECONDS: Final = 0.002


class CpuSlice:
    def __init__(self, seconds: float = SLICE_SECONDS) -> None:
        self._seconds = seconds
        self._until = time.perf_counter() + seconds

    def due(self) -> bool:
        """The slice is used up: `await tick()` now (a test without a coroutine per item)."""
        return time.perf_counter() >= self._until

    async def tick(self) -> None:
        now = time.perf_counter()
        if now >= self._until:
            await trio.lowlevel.checkpoint()
            self._until = time.perf_counter() + self._seconds
