"""Failed web logins are delayed more and more, per source address and per user name.

The same shape as imapd's LoginThrottle (base * 2**(n-1), capped at `cap`,
bounded tables, forgotten after 10 minutes without a failure), with a second
key: the user name tried, so spreading guesses over many addresses still
slows down for one account. The delay applied is the larger of the two.
Shared by every request of one web process.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

_MAX_KEYS: Final = 10_000
_FORGET_AFTER: Final = 600.0


@dataclass
class _Failures:
    count: int
    last: float


class _Table:
    def __init__(self) -> None:
        self._rows: OrderedDict[str, _Failures] = OrderedDict()

    def failed(self, key: str, now: float) -> int:
        entry = self._rows.pop(key, None)
        if entry is None or now - entry.last > _FORGET_AFTER:
            entry = _Failures(0, now)
        entry.count += 1
        entry.last = now
        self._rows[key] = entry
        while len(self._rows) > _MAX_KEYS:
            self._rows.popitem(last=False)
        return entry.count

    def clear(self, key: str) -> None:
        self._rows.pop(key, None)

    def count(self, key: str, now: float) -> int:
        entry = self._rows.get(key)
        return 0 if entry is None or now - entry.last > _FORGET_AFTER else entry.count


class WebLoginLimiter:
    def __init__(self, base: float = 0.5, cap: float = 8.0) -> None:
        self.base = base
        self.cap = cap
        self._addresses = _Table()
        self._users = _Table()

    def _delay(self, count: int) -> float:
        return 0.0 if count == 0 else float(min(self.cap, self.base * 2.0 ** (count - 1)))

    def failed(self, address: str, user: str) -> float:
        """Record a failure; return how long to wait before answering it."""
        now = time.monotonic()
        by_address = self._addresses.failed(address, now)
        by_user = self._users.failed(user.lower(), now)
        return self._delay(max(by_address, by_user))

    def succeeded(self, address: str, user: str) -> None:
        self._addresses.clear(address)
        self._users.clear(user.lower())

    def failures(self, address: str, user: str) -> int:
        now = time.monotonic()
        return max(self._addresses.count(address, now), self._users.count(user.lower(), now))
