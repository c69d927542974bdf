"""Outages as a client sees them: from the first failed command (or dropped
connection) to the next acknowledged one, with the steps of the session that
ended it. Pure bookkeeping; the client that feeds it lives in
bench/failover_bench.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

# What one session setup took, step by step, in seconds: ("connect", 0.05), ("starttls", 0.2), ...
Steps = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Outage:
    start: float  # monotonic time of the first error
    end: float  # monotonic time of the next acknowledged command
    errors: int = 1  # failed commands or connection attempts in between, the first included
    # The session that ended it: when its setup began, and its steps up to the acknowledged command.
    session_start: float | None = None
    steps: Steps = ()

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def before_session(self) -> float | None:
        """From the first error to the start of the session that ended the outage
        (failed attempts and the waits between them)."""
        return None if self.session_start is None else self.session_start - self.start


@dataclass
class OutageTracker:
    """Fed by one client thread: `error(t)` on every failure, `ok(t)` on every
    acknowledged command. An outage opens at the first error after an ok and
    closes at the next ok."""

    outages: list[Outage] = field(default_factory=list)
    _open: float | None = None
    _errors: int = 0

    def error(self, t: float) -> None:
        if self._open is None:
            self._open = t
            self._errors = 0
        self._errors += 1

    def ok(self, t: float, *, session_start: float | None = None, steps: Steps = ()) -> None:
        """`session_start`/`steps`: the session whose command was acknowledged, when it is
        new (the steps of a session set up after the first error say what the outage cost)."""
        if self._open is not None:
            if session_start is not None and session_start < self._open:
                session_start, steps = None, ()  # an older session: it says nothing about the reconnect
            self.outages.append(Outage(self._open, t, self._errors, session_start, steps))
            self._open = None

    @property
    def open_since(self) -> float | None:
        return self._open


def longest_in(outages: Sequence[Outage], start: float, end: float) -> Outage | None:
    """The client-visible outage caused by an event in [start, end]: the
    longest outage that began inside the window (None if the client never
    noticed it)."""
    inside = [o for o in outages if start <= o.start <= end]
    return max(inside, key=lambda o: o.seconds, default=None)


def outage_in(outages: Sequence[Outage], start: float, end: float) -> float:
    """`longest_in`'s length in seconds (0.0 if the client never noticed the event)."""
    found = longest_in(outages, start, end)
    return 0.0 if found is None else found.seconds
