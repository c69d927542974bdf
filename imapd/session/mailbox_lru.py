"""A process-wide LRU whose entries belong to mailboxes: bounded in bytes, and emptied per
mailbox once no session of this process has that mailbox selected.

The rendered-ENVELOPE and SORT-key caches (`envelope_cache`, `sort_key_cache`)
keep per-message values across sessions: a client that reconnects and
re-fetches the same messages finds them. Kept for the life of the process,
one SORT of a 50,000-message mailbox left ~40 MiB behind after its session
closed (issue 17: imapd RssAnon 34 -> 95 MB at 50k). So:

- the entries are grouped by mailbox (user, mailbox id); the groups are kept
  in least-recently-used order and so are the entries in each group; beyond
  `max_bytes` (an estimate per entry, `size_of`) or `max_entries`, the oldest
  entry of the least recently used mailbox goes first;
- `drop_mailbox` forgets one mailbox's entries at once. The server calls it
  when the mailbox's change feed closes, i.e. when the last session that had
  it selected left and the feed's linger ran out (`imapd.watch_hub`), so an
  idle process holds none of these values.

All operations are O(1) (amortised): no scan over the whole cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
MailboxKey = tuple[str, int]  # (user, mailbox id)


class _Group(Generic[K, V]):
    __slots__ = ("bytes", "entries")

    def __init__(self) -> None:
        self.entries: OrderedDict[K, V] = OrderedDict()
        self.bytes = 0


class MailboxLru(Generic[K, V]):
    def __init__(self, *, max_entries: int, max_bytes: int, size_of: Callable[[V], int]) -> None:
        if max_entries < 0 or max_bytes < 0:
            raise ValueError("cache bounds must not be negative")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._groups: OrderedDict[MailboxKey, _Group[K, V]] = OrderedDict()
        self.bytes = 0
        self._count = 0

    def get(self, mailbox: MailboxKey, key: K) -> V | None:
        group = self._groups.get(mailbox)
        if group is None:
            return None
        value = group.entries.get(key)
        if value is not None:
            group.entries.move_to_end(key)
            self._groups.move_to_end(mailbox)
        return value

    def get_each(self, mailbox: MailboxKey, keys: Iterable[K]) -> list[V | None]:
        """The entry of each of `keys` (None where `mailbox` holds none), each found one now the
        most recent (one lookup of the mailbox for all of them; a list, not a dict: a SORT of
        50,000 messages otherwise kept 50,000 more tracked tuples alive for the GC to walk)."""
        group = self._groups.get(mailbox)
        if group is None:
            return [None for _ in keys]
        self._groups.move_to_end(mailbox)
        entries = group.entries
        get, touch = entries.get, entries.move_to_end
        found: list[V | None] = []
        for key in keys:
            value = get(key)
            if value is not None:
                touch(key)
            found.append(value)
        return found

    def has_all(self, mailbox: MailboxKey, keys: Iterable[K]) -> bool:
        group = self._groups.get(mailbox)
        if group is None:
            return False
        entries = group.entries
        return all(key in entries for key in keys)

    def put(self, mailbox: MailboxKey, key: K, value: V) -> None:
        size = self._size_of(value)
        if size > self.max_bytes or not self.max_entries:
            return  # would evict everything and still not fit
        group = self._groups.get(mailbox)
        if group is None:
            group = self._groups[mailbox] = _Group()
        else:
            self._groups.move_to_end(mailbox)
        old = group.entries.pop(key, None)
        if old is not None:
            removed = self._size_of(old)
            group.bytes -= removed
            self.bytes -= removed
            self._count -= 1
        group.entries[key] = value
        group.bytes += size
        self.bytes += size
        self._count += 1
        while self._count > self.max_entries or self.bytes > self.max_bytes:
            self._evict_one()

    def _evict_one(self) -> None:
        mailbox, group = next(iter(self._groups.items()))
        _, dropped = group.entries.popitem(last=False)
        size = self._size_of(dropped)
        group.bytes -= size
        self.bytes -= size
        self._count -= 1
        if not group.entries:
            del self._groups[mailbox]

    def drop_mailbox(self, mailbox: MailboxKey) -> int:
        """Forget every entry of `mailbox`; returns how many there were."""
        group = self._groups.pop(mailbox, None)
        if group is None:
            return 0
        self.bytes -= group.bytes
        self._count -= len(group.entries)
        return len(group.entries)

    def clear(self) -> None:
        self._groups.clear()
        self.bytes = 0
        self._count = 0

    @property
    def mailboxes(self) -> int:
        return len(self._groups)

    def __len__(self) -> int:
        return self._count
