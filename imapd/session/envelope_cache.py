"""Rendered ENVELOPEs, kept across sessions of this process.

A message never changes once stored (only its flags do), and (user,
mailbox id, UID) never names a different message, so its ENVELOPE can be
reused. Clients re-fetch the envelopes of the newest messages on every
connection; with the cache such a FETCH needs no header bytes from the
store and no header parsing here. Bounded LRU.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from imapd.protocol.values import Value

_MAX_ENTRIES: Final = 50_000

Key = tuple[str, int, int]  # (user, mailbox_id, uid)


class EnvelopeCache:
    def __init__(self, max_entries: int = _MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Key, Value] = OrderedDict()

    def get(self, key: Key) -> Value | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def has_all(self, user: str, mailbox_id: int, uids: list[int]) -> bool:
        entries = self._entries
        return all((user, mailbox_id, uid) in entries for uid in uids)

    def put(self, key: Key, value: Value) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
