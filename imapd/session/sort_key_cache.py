"""SortKeys of messages, kept across sessions of this process.

A stored message never changes, and (user, mailbox id, UIDVALIDITY, UID)
never names a different one, so the keys SORT and THREAD compare (parsed
from the header block, ~0.4 ms per message) are computed once. A repeated
SORT of a big mailbox then needs no header bytes from the store. Bounded LRU:
one entry measured ~0.5 KiB (tracemalloc, `mailha bench sort`'s generated mail;
long subjects and reference chains cost more), so the default bound is
~100-200 MiB per process when full.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from mailparse.sort_keys import SortKeys

_MAX_ENTRIES: Final = 200_000

Key = tuple[str, int, int, int]  # (user, mailbox_id, uidvalidity, uid)


class SortKeyCache:
    def __init__(self, max_entries: int = _MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Key, SortKeys] = OrderedDict()

    def get(self, key: Key) -> SortKeys | None:
        keys = self._entries.get(key)
        if keys is not None:
            self._entries.move_to_end(key)
        return keys

    def put(self, key: Key, keys: SortKeys) -> None:
        self._entries[key] = keys
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
