"""Every UID of a mailbox as SELECT last read it, for a reader beside the store.

SELECT sends the session its UID map: at 50,000 messages that is ~200 blocks of
`flag_members` joined into 200 KB, most of the local SELECT's time, and the same
bytes every time the mailbox has not changed. An entry is valid while the
mailbox's UIDVALIDITY and HIGHESTMODSEQ are the ones it was read under: every
write that adds or removes a message of a mailbox (append, COPY/MOVE into it,
EXPUNGE, MOVE out, RENAME of INBOX) raises its HIGHESTMODSEQ in the same
transaction, and a mailbox deleted and created again gets a new UIDVALIDITY.
A flag change raises it too (a needless miss, not a wrong answer).

Bounded in entries and bytes, least recently used first out, and an entry goes
when its owner says no session has the mailbox selected any more (`drop`: at a
million messages an entry is 4 MB an idle imapd would otherwise keep). Not thread-safe:
one owner (`store.reader.LocalReader`, imapd's trio thread).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

MAX_BYTES: Final = 8 * 1024 * 1024  # 2 million UIDs over all entries
MAX_ENTRIES: Final = 32


class UidListCache:
    def __init__(self, max_bytes: int = MAX_BYTES, max_entries: int = MAX_ENTRIES) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.bytes = 0
        self._entries: OrderedDict[int, tuple[int, int, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, mailbox_id: int, uidvalidity: int, highestmodseq: int) -> bytes | None:
        entry = self._entries.get(mailbox_id)
        if entry is None:
            return None
        if entry[:2] != (uidvalidity, highestmodseq):
            self._drop(mailbox_id)
            return None
        self._entries.move_to_end(mailbox_id)
        return entry[2]

    def put(self, mailbox_id: int, uidvalidity: int, highestmodseq: int, uids: bytes) -> None:
        self._drop(mailbox_id)
        if len(uids) > self.max_bytes:
            return
        self._entries[mailbox_id] = (uidvalidity, highestmodseq, uids)
        self.bytes += len(uids)
        while self.bytes > self.max_bytes or len(self._entries) > self.max_entries:
            self._drop(next(iter(self._entries)))

    def drop(self, mailbox_id: int) -> int:
        """Forget the mailbox's entry; the bytes it held (0: there was none)."""
        before = self.bytes
        self._drop(mailbox_id)
        return before - self.bytes

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def _drop(self, mailbox_id: int) -> None:
        entry = self._entries.pop(mailbox_id, None)
        if entry is not None:
            self.bytes -= len(entry[2])
