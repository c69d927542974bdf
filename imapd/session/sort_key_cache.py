"""SortKeys of messages, kept across sessions of this process.

A stored message never changes, and (user, mailbox id, UIDVALIDITY, UID)
never names a different one, so the keys SORT and THREAD compare (parsed
from the header block, ~0.4 ms per message) are computed once. A repeated
SORT of a big mailbox then needs no header bytes from the store. A
`MailboxLru`: bounded in entries and in estimated bytes
(`ServerSettings.sort_cache_bytes`, `imapd serve --sort-cache-mb`,
cluster.yaml `imap.sort_cache`), and a mailbox's entries are dropped once no
session has it selected (one SORT of 50,000 messages otherwise left ~40 MiB
in the process for good, issue 17). What is dropped is decoded again from
the keys the store keeps (one index scan), so a small bound costs a SORT
some CPU, never a header fetch (8 MiB: a 50,000-message SORT took 224 ms
against ~95 ms).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Final

from imapd.session.mailbox_lru import MailboxKey, MailboxLru
from mailparse.sort_keys import SortKeys

if TYPE_CHECKING:
    from collections.abc import Sequence

_MAX_ENTRIES: Final = 200_000
DEFAULT_MAX_BYTES: Final = 128 * 1024 * 1024  # 8 MiB made a 50,000-message SORT 2x slower (bench compare)
# Per entry beside its strings: the NamedTuple, its ints, the (UIDVALIDITY, UID) key, the
# dict and LRU slots (tracemalloc: ~375 B measured, tests/test_imap_memory.py checks it).
ENTRY_OVERHEAD: Final = 380
# What `fits` assumes an entry holds before any is cached (the bench corpus: ~0.8 KiB).
TYPICAL_ENTRY: Final = 800

Key = tuple[str, int, int, int]  # (user, mailbox_id, uidvalidity, uid)


class SortKeyCache:
    def __init__(self, max_entries: int = _MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._lru: MailboxLru[tuple[int, int], SortKeys] = MailboxLru(
            max_entries=max_entries, max_bytes=max_bytes, size_of=size_of
        )

    def get(self, key: Key) -> SortKeys | None:
        return self._lru.get((key[0], key[1]), (key[2], key[3]))

    def get_each(self, user: str, mailbox_id: int, uidvalidity: int, uids: Sequence[int]) -> list[SortKeys | None]:
        """The cached keys of each of `uids`, None where none are cached."""
        return self._lru.get_each((user, mailbox_id), ((uidvalidity, uid) for uid in uids))

    def fits(self, count: int) -> bool:
        """Whether the keys of `count` messages can be held at once. When they cannot, caching
        them only evicts (the oldest of the same SORT first), so the next SORT finds none of
        them and every message has paid a put and an eviction for nothing."""
        per_entry = self._lru.bytes / len(self._lru) if len(self._lru) else TYPICAL_ENTRY
        return count <= self._lru.max_entries and count * per_entry <= self._lru.max_bytes

    def worth_keeping(self, count: int) -> bool:
        """Whether caching the keys of `count` messages of one mailbox pays: up to twice what
        `fits`, a repeated SORT/THREAD still finds part of them (an LRU pass over the mailbox
        evicts its own oldest); beyond that it finds none, and every put only evicts."""
        return self.fits(count // 2)

    def put(self, key: Key, keys: SortKeys) -> None:
        self._lru.put((key[0], key[1]), (key[2], key[3]), keys)

    def drop_mailbox(self, mailbox: MailboxKey) -> int:
        return self._lru.drop_mailbox(mailbox)

    @property
    def bytes(self) -> int:
        return self._lru.bytes

    @property
    def max_bytes(self) -> int:
        return self._lru.max_bytes

    def __len__(self) -> int:
        return len(self._lru)


def size_of(keys: SortKeys) -> int:
    """Estimated bytes one entry holds (an empty string is a shared object: free)."""
    size = ENTRY_OVERHEAD
    for text in (keys.subject, keys.from_, keys.to, keys.cc, keys.display_from, keys.display_to, keys.message_id):
        if text:
            size += sys.getsizeof(text)
    if keys.parent_ids:
        size += sys.getsizeof(keys.parent_ids) + sum(sys.getsizeof(ref) for ref in keys.parent_ids)
    return size
