"""A short-lived cache of address -> user resolutions.

Why: every RCPT would otherwise cost a ResolveAddress round trip to the
store, as much CPU as the append itself. Only successful lookups are kept,
for `ttl` seconds (Dovecot's userdb cache keeps them for an hour by default):
a new address works at once, and a deleted user's mail is still refused by
the store at DATA (the append names a user that no longer exists -> 550).
The cost is that an alias moved to another user can deliver to the old one
for up to `ttl` seconds. ttl=0 disables the cache.
"""

from __future__ import annotations

import time
from collections import OrderedDict


class ResolutionCache:
    def __init__(self, ttl: float, max_entries: int = 50_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def get(self, address: str, now: float | None = None) -> str | None:
        if self.ttl <= 0:
            return None
        entry = self._entries.get(address.lower())
        if entry is None:
            return None
        expires, user = entry
        if (time.monotonic() if now is None else now) >= expires:
            del self._entries[address.lower()]
            return None
        return user

    def put(self, address: str, user: str, now: float | None = None) -> None:
        if self.ttl <= 0:
            return
        key = address.lower()
        self._entries[key] = ((time.monotonic() if now is None else now) + self.ttl, user)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
