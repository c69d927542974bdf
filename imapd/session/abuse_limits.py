"""Abuse limits shared by all connections of one imapd process.

Failed logins are delayed more and more per source address (bounded table:
the oldest entries go first); a user may hold only so many connections.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

_MAX_ADDRESSES: Final = 10_000
_FORGET_AFTER: Final = 600.0  # seconds without a failure


@dataclass
class _Failures:
    count: int
    last: float


class LoginThrottle:
    """Delay before answering a failed login: base * 2**(n-1), capped."""

    def __init__(self, base: float = 0.5, cap: float = 8.0) -> None:
        self.base = base
        self.cap = cap
        self._table: OrderedDict[str, _Failures] = OrderedDict()

    def failed(self, address: str) -> float:
        """Record a failure; return how long to wait before answering it."""
        now = time.monotonic()
        entry = self._table.pop(address, None)
        if entry is None or now - entry.last > _FORGET_AFTER:
            entry = _Failures(0, now)
        entry.count += 1
        entry.last = now
        self._table[address] = entry
        while len(self._table) > _MAX_ADDRESSES:
            self._table.popitem(last=False)
        return float(min(self.cap, self.base * 2.0 ** (entry.count - 1)))

    def succeeded(self, address: str) -> None:
        self._table.pop(address, None)

    def __len__(self) -> int:
        return len(self._table)


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
