"""Abuse limits shared by all connections of one imapd process.

Failed logins are penalised per source address AND per target user, in one
process-wide table, so that:

- parallel connections share the penalty: every attempt on a penalised key
  takes the next turn (`reserve`), spaced by the current delay, instead of
  each connection waiting on its own (60 connections were ~4 guesses/s);
- a success clears only the penalty of the user who logged in, never the
  address's: one valid account does not unlock fast guessing of others.

The delay grows base * 2**(n-1) up to `cap`, and is forgotten after ten
minutes without a failure. An attempt that would have to wait longer than
`cap` for its turn is refused at once, unchecked, so the queue (and a real
user's wait during an attack) stays bounded. The tables are bounded too (the
oldest entries go first). A user may hold only so many connections.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

_MAX_KEYS: Final = 10_000  # per kind of key
_FORGET_AFTER: Final = 600.0  # seconds without a failure


@dataclass
class _Failures:
    count: int
    last: float
    next_turn: float  # no attempt on this key starts before this


@dataclass(frozen=True)
class PenaltyKeys:
    address: str
    user: str

    @staticmethod
    def of(address: str, user: str) -> PenaltyKeys:
        return PenaltyKeys(address, user.strip().lower()[:256])


class LoginThrottle:
    def __init__(self, base: float = 0.5, cap: float = 8.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.base = base
        self.cap = cap
        self._clock = clock
        self._addresses: OrderedDict[str, _Failures] = OrderedDict()
        self._users: OrderedDict[str, _Failures] = OrderedDict()

    def _delay(self, count: int) -> float:
        return float(min(self.cap, self.base * 2.0 ** (count - 1))) if count else 0.0

    def _entries(self, keys: PenaltyKeys, now: float) -> list[_Failures]:
        found = []
        for table, key in ((self._addresses, keys.address), (self._users, keys.user)):
            entry = table.get(key)
            if entry is not None and now - entry.last > _FORGET_AFTER:
                del table[key]
                entry = None
            if entry is not None:
                found.append(entry)
        return found

    def reserve(self, keys: PenaltyKeys) -> float | None:
        """Seconds to wait before this attempt may run (its turn is taken), or None: refuse it now."""
        now = self._clock()
        entries = self._entries(keys, now)
        turn = max([now, *(e.next_turn for e in entries)])
        if turn - now > self.cap:
            return None
        for entry in entries:
            entry.next_turn = turn + self._delay(entry.count)
        return turn - now

    def failed(self, keys: PenaltyKeys) -> float:
        """Record a failure; return how long to wait before answering it."""
        now = self._clock()
        delay = 0.0
        for table, key in ((self._addresses, keys.address), (self._users, keys.user)):
            entry = table.pop(key, None)
            if entry is None or now - entry.last > _FORGET_AFTER:
                entry = _Failures(0, now, now)
            entry.count += 1
            entry.last = now
            entry.next_turn = max(entry.next_turn, now + self._delay(entry.count))
            delay = max(delay, self._delay(entry.count))
            table[key] = entry
            while len(table) > _MAX_KEYS:
                table.popitem(last=False)
        return delay

    def succeeded(self, keys: PenaltyKeys) -> None:
        """The user proved the password: their own penalty goes; the address keeps its own."""
        self._users.pop(keys.user, None)

    def failures(self, keys: PenaltyKeys) -> tuple[int, int]:
        """(address failures, user failures) currently remembered."""
        now = self._clock()
        a = self._addresses.get(keys.address)
        u = self._users.get(keys.user)
        return (
            a.count if a is not None and now - a.last <= _FORGET_AFTER else 0,
            u.count if u is not None and now - u.last <= _FORGET_AFTER else 0,
        )

    def __len__(self) -> int:
        return len(self._addresses) + len(self._users)


class ConnectionCap:
    """At most `limit` authenticated connections per user."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}

    def acquire(self, user: str) -> bool:
        count = self._counts.get(user, 0)
        if count >= self.limit:
            return False
        self._counts[user] = count + 1
        return True

    def release(self, user: str) -> None:
        count = self._counts.get(user, 0) - 1
        if count > 0:
            self._counts[user] = count
        else:
            self._counts.pop(user, None)

    def count(self, user: str) -> int:
        return self._counts.get(user, 0)
