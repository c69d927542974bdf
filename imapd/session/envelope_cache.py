"""Rendered ENVELOPEs, kept across sessions of this process.

A message never changes once stored (only its flags do), and (user,
mailbox id, UID) never names a different message, so its ENVELOPE can be
reused. Clients re-fetch the envelopes of the newest messages on every
connection; with the cache such a FETCH needs no header bytes from the
store and no header parsing here. A `MailboxLru`: bounded in entries and in
bytes (`ServerSettings.envelope_cache_bytes`, `imapd serve
--envelope-cache-mb`, cluster.yaml `imap.envelope_cache`), and a mailbox's
entries are dropped once no session has it selected, so a FETCH ENVELOPE of
a whole large folder does not leave the process holding tens of megabytes
once its sessions are gone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from imapd.protocol.values import Raw, Value
from imapd.session.mailbox_lru import MailboxKey, MailboxLru

_MAX_ENTRIES: Final = 50_000
DEFAULT_MAX_BYTES: Final = 8 * 1024 * 1024
# Per entry beside the wire bytes: the Raw, the bytes object's header, the UID, the
# dict and LRU slots (tracemalloc: 180 B measured, tests/test_imap_memory.py checks it).
ENTRY_OVERHEAD: Final = 200

Key = tuple[str, int, int]  # (user, mailbox_id, uid)


class EnvelopeCache:
    def __init__(self, max_entries: int = _MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._lru: MailboxLru[int, Value] = MailboxLru(max_entries=max_entries, max_bytes=max_bytes, size_of=_size)

    def get(self, key: Key) -> Value | None:
        return self._lru.get((key[0], key[1]), key[2])

    def has_all(self, user: str, mailbox_id: int, uids: Sequence[int]) -> bool:
        return self._lru.has_all((user, mailbox_id), uids)

    def put(self, key: Key, value: Value) -> None:
        self._lru.put((key[0], key[1]), key[2], value)

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


def _size(value: Value) -> int:
    return ENTRY_OVERHEAD + (len(value.value) if isinstance(value, Raw) else 0)
