"""Lets the LMDB map be resized, or the environment reopened, while other threads read.

LMDB's set_mapsize may only be called while no transaction of this process
is open, and closing the environment ends every one. Readers hold the gate
shared for the life of their read transaction; a resize takes it
exclusively, waiting for open readers to finish and holding new ones back
until the map has grown. A reopen (store/committer.py, "Reopening") is never
needed at once: it waits a short while for the readers and gives up if one
is still open, so a long Fetch stream does not hold the writes behind it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class MapGate:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._resizing = False
        self.entered = 0  # read transactions ever begun: tells the memory trimmer reads happened

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._readers += 1
            self.entered += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    def exclusive(self, action: Callable[[], None]) -> None:
        """Run `action` with no read transaction open in this process."""
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
            while self._readers:
                self._cond.wait()
        try:
            action()
        finally:
            self._release()

    def exclusive_if_free(self, action: Callable[[], None], wait: float) -> bool:
        """Run `action` with no read transaction open, if the open ones end within `wait` seconds.

        New readers are held back while it waits; False (and nothing run) if one was still open."""
        deadline = time.monotonic() + wait
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
            while self._readers:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._resizing = False
                    self._cond.notify_all()
                    return False
                self._cond.wait(left)
        try:
            action()
        finally:
            self._release()
        return True

    def _release(self) -> None:
        with self._cond:
            self._resizing = False
            self._cond.notify_all()
