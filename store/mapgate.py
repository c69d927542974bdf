"""Lets the LMDB map be resized while other threads read.

LMDB's set_mapsize may only be called while no transaction of this process
is open. Readers hold the gate shared for the life of their read
transaction; a resize takes it exclusively, waiting for open readers to
finish and holding new ones back until the map has grown.
"""

from __future__ import annotations

import threading
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
            with self._cond:
                self._resizing = False
                self._cond.notify_all()
