"""Rendered ENVELOPEs, kept across sessions of this process.

A message never changes once stored (only its flags do), and (user,
mailbox id, UID) never names a different message, so its ENVELOPE can be
reused. Clients re-fetch the envelopes of the newest messages on every
connection; with the cache such a FETCH needs no header bytes from the
store and no header parsing here. An LRU bounded in entries and in bytes
(`ServerSettings.envelope_cache_bytes`, `imapd serve --envelope-cache-mb`): a
FETCH ENVELOPE of a whole large folder must not leave the process holding
tens of megabytes once its sessions are gone.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

from imapd.protocol.values import Raw, Value

_MAX_ENTRIES: Final = 50_000
DEFAULT_MAX_BYTES: Final = 8 * 1024 * 1024
_ENTRY_OVERHEAD: Final = 200  # key tuple, dict slot, Raw object: roughly, per entry

Key = tuple[str, int, int]  # (user, mailbox_id, uid)


class EnvelopeCache:
    def __init__(self, max_entries: int = _MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[Key, Value] = OrderedDict()

    def get(self, key: Key) -> Value | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def has_all(self, user: str, mailbox_id: int, uids: Sequence[int]) -> bool:
        entries = self._entries
        return all((user, mailbox_id, uid) in entries for uid in uids)

    def put(self, key: Key, value: Value) -> None:
        old = self._entries.get(key)
        if old is not None:
            self.bytes -= _size(old)
        self._entries[key] = value
        self.bytes += _size(value)
        self._entries.move_to_end(key)
        while self._entries and (len(self._entries) > self.max_entries or self.bytes > self.max_bytes):
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= _size(dropped)

    def __len__(self) -> int:
        return len(self._entries)


def _size(value: Value) -> int:
    return _ENTRY_OVERHEAD + (len(value.value) if isinstance(value, Raw) else 0)
