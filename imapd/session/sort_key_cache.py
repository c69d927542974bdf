"""SortKeys of messages, kept across sessions of this process.

A stored message never changes, and (user, mailbox id, UIDVALIDITY, UID)
never names a different one, so the keys SORT and THREAD compare (parsed
from the header block, ~0.4 ms per message) are computed once. A repeated
SORT of a big mailbox then needs no header bytes from the store. Bounded LRU
in entries and in estimated bytes (`ServerSettings.sort_cache_bytes`, `imapd
serve --sort-cache-mb`): one entry measured ~0.5 KiB (tracemalloc, `mailha bench
sort`'s generated mail; long subjects and reference chains cost more). What is
dropped is decoded again from the keys the store keeps (one index scan), so a
small bound costs a SORT some CPU, never a header fetch (8 MiB: a 50,000-message
SORT took 224 ms against ~95 ms, and imapd's memory after the sessions closed did
not drop, so the default keeps what the 200,000-entry bound kept).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from mailparse.sort_keys import SortKeys

_MAX_ENTRIES: Final = 200_000
DEFAULT_MAX_BYTES: Final = 128 * 1024 * 1024  # 8 MiB made a 50,000-message SORT 2x slower (bench compare)
_ENTRY_OVERHEAD: Final = 400  # the NamedTuple, its ints, the key tuple, the dict slot: roughly

Key = tuple[str, int, int, int]  # (user, mailbox_id, uidvalidity, uid)


class SortKeyCache:
    def __init__(self, max_entries: int = _MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[Key, SortKeys] = OrderedDict()

    def get(self, key: Key) -> SortKeys | None:
        keys = self._entries.get(key)
        if keys is not None:
            self._entries.move_to_end(key)
        return keys

    def put(self, key: Key, keys: SortKeys) -> None:
        old = self._entries.get(key)
        if old is not None:
            self.bytes -= _size(old)
        self._entries[key] = keys
        self.bytes += _size(keys)
        self._entries.move_to_end(key)
        while self._entries and (len(self._entries) > self.max_entries or self.bytes > self.max_bytes):
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= _size(dropped)

    def __len__(self) -> int:
        return len(self._entries)


def _size(keys: SortKeys) -> int:
    text = len(keys.subject) + len(keys.from_) + len(keys.to) + len(keys.cc)
    text += len(keys.display_from) + len(keys.display_to) + len(keys.message_id or b"")
    return _ENTRY_OVERHEAD + text + sum(40 + len(ref) for ref in keys.parent_ids)
