"""Outages as a client sees them: from the first failed command (or dropped
connection) to the next acknowledged one. Pure bookkeeping; the client that
feeds it lives in bench/failover_bench.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Outage:
    start: float  # monotonic time of the first error
    end: float  # monotonic time of the next acknowledged command

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class OutageTracker:
    """Fed by one client thread: `error(t)` on every failure, `ok(t)` on every
    acknowledged command. An outage opens at the first error after an ok and
    closes at the next ok."""

    outages: list[Outage] = field(default_factory=list)
    _open: float | None = None

    def error(self, t: float) -> None:
        if self._open is None:
            self._open = t

    def ok(self, t: float) -> None:
        if self._open is not None:
            self.outages.append(Outage(self._open, t))
            self._open = None

    @property
    def open_since(self) -> float | None:
        return self._open


def outage_in(outages: Sequence[Outage], start: float, end: float) -> float:
    """The client-visible outage caused by an event in [start, end]: the
    longest outage that began inside the window (0.0 if the client never
    noticed it)."""
    return max((o.seconds for o in outages if start <= o.start <= end), default=0.0)
