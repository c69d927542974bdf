"""The header index: per message, the normalised SUBJECT/FROM/TO/CC/BCC text.

Key (mailbox_id u64, segment u32) with segment = uid >> SEGMENT_BITS; value:
entries in UID order, each uid u32 and length u32 (little-endian) then the
text of `mailparse.search_fields.indexed_text`, computed once when the
message arrives. SEARCH SUBJECT word reads ~3,000 values for 50,000 messages
and looks into an entry only when the whole value holds the needle.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

import lmdb

from mailparse.search_fields import text_matches
from store import uid_groups
from store.schema import MSG_KEY, U64

SEGMENT_BITS: Final = 4
_ENTRY: Final = struct.Struct("<II")


def entries(raw: bytes) -> Iterator[tuple[int, bytes]]:
    at = 0
    while at < len(raw):
        uid, length = _ENTRY.unpack_from(raw, at)
        at += _ENTRY.size
        yield uid, raw[at : at + length]
        at += length


def _pack(items: dict[int, bytes]) -> bytes:
    return b"".join(_ENTRY.pack(uid, len(text)) + text for uid, text in sorted(items.items()))


class HeaderIndexWriter:
    """The segments one write operation touches, written back once by `flush`."""

    def __init__(self, txn: lmdb.Transaction, db: lmdb._Database, mailbox_id: int) -> None:
        self.txn = txn
        self.db = db
        self.mailbox_id = mailbox_id
        self.segments: dict[int, dict[int, bytes]] = {}

    def _segment(self, uid: int) -> dict[int, bytes]:
        no = uid >> SEGMENT_BITS
        seg = self.segments.get(no)
        if seg is None:
            raw = self.txn.get(MSG_KEY.pack(self.mailbox_id, no), db=self.db)
            seg = self.segments[no] = dict(entries(bytes(raw))) if raw is not None else {}
        return seg

    def put(self, uid: int, text: bytes) -> None:
        self._segment(uid)[uid] = text

    def remove_all(self, uids: Sequence[int]) -> None:
        """Drop the entries of `uids` (ascending); a segment whose every possible UID goes is dropped unread."""
        for no, gone in uid_groups.by_key(uids, SEGMENT_BITS):
            if len(gone) == 1 << SEGMENT_BITS or (no == 0 and len(gone) == (1 << SEGMENT_BITS) - 1):
                self.segments[no] = {}  # UID 0 does not exist: segment 0 holds at most 15
                continue
            seg = self._segment(no << SEGMENT_BITS)
            for uid in gone:
                seg.pop(uid, None)

    def flush(self) -> None:
        for no, seg in self.segments.items():
            key = MSG_KEY.pack(self.mailbox_id, no)
            if seg:
                self.txn.put(key, _pack(seg), db=self.db)
            else:
                self.txn.delete(key, db=self.db)
        self.segments.clear()


def text_of(txn: lmdb.Transaction, db: lmdb._Database, mailbox_id: int, uid: int) -> bytes | None:
    raw = txn.get(MSG_KEY.pack(mailbox_id, uid >> SEGMENT_BITS), db=db)
    if raw is None:
        return None
    for u, text in entries(bytes(raw)):
        if u == uid:
            return text
    return None


def texts_of(txn: lmdb.Transaction, db: lmdb._Database, mailbox_id: int, uids: Iterable[int]) -> dict[int, bytes]:
    """uid -> text of the `uids` the index holds, each segment read and decoded once
    (COPY of 1,000 messages: ~63 segments instead of 1,000 reads and decodes)."""
    out: dict[int, bytes] = {}
    done: set[int] = set()
    for uid in uids:
        no = uid >> SEGMENT_BITS
        if no in done:
            continue
        done.add(no)
        raw = txn.get(MSG_KEY.pack(mailbox_id, no), db=db)
        if raw is not None:
            out.update(entries(bytes(raw)))
    return out


def matching(
    txn: lmdb.Transaction,
    db: lmdb._Database,
    mailbox_id: int,
    ranges: list[tuple[int, int]],
    *,
    at: int,
    needle: bytes,
) -> list[int]:
    """UIDs in `ranges` whose field `at` holds `needle` (see search_fields.text_matches)."""
    prefix = U64.pack(mailbox_id)
    out: list[int] = []
    cur = txn.cursor(db=db)
    for lo, hi in ranges:
        if not cur.set_range(MSG_KEY.pack(mailbox_id, lo >> SEGMENT_BITS)):
            break
        for key, value in cur:
            if key[:8] != prefix or MSG_KEY.unpack(key)[1] > hi >> SEGMENT_BITS:
                break
            if needle not in value:
                continue
            for uid, text in entries(bytes(value)):
                if lo <= uid <= hi and text_matches(text, at, needle):
                    out.append(uid)
    return out
