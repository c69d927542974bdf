"""FETCH of UID, FLAGS, MODSEQ, RFC822.SIZE and INTERNALDATE straight from index columns.

What `fetch_render` + `fetch_list` + `encode` produce for these attributes,
written as bytes per message without building value trees (a test compares
the two byte for byte): the FETCH of every flag a client does when it opens a
large folder is 50,000 such lines.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from imapd.message.dates import format_internal_date
from imapd.protocol.fetch_spec import FetchAttribute, SimpleItem, SimpleKind

INDEX_KINDS: Final = frozenset(
    {SimpleKind.UID, SimpleKind.FLAGS, SimpleKind.MODSEQ, SimpleKind.RFC822_SIZE, SimpleKind.INTERNALDATE}
)
# (uid, flags list bytes, modseq, size, date, zone) -> the item's bytes
_Piece = Callable[[int, bytes, int, int, int, int], bytes]


def from_index(attributes: tuple[FetchAttribute, ...]) -> bool:
    """Whether every attribute comes from the flag index (and none sets \\Seen)."""
    return bool(attributes) and all(isinstance(a, SimpleItem) and a.kind in INDEX_KINDS for a in attributes)


def needs_sizes_dates(attributes: tuple[FetchAttribute, ...]) -> bool:
    return any(
        isinstance(a, SimpleItem) and a.kind in (SimpleKind.RFC822_SIZE, SimpleKind.INTERNALDATE) for a in attributes
    )


def flag_list_bytes(flags: tuple[str, ...]) -> bytes:
    return b"(" + " ".join(flags).encode("utf-8", "replace") + b")"


def _piece(kind: SimpleKind) -> _Piece:
    if kind is SimpleKind.UID:
        return lambda uid, flags, modseq, size, date, tz: b"UID %d" % uid
    if kind is SimpleKind.FLAGS:
        return lambda uid, flags, modseq, size, date, tz: b"FLAGS " + flags
    if kind is SimpleKind.MODSEQ:
        return lambda uid, flags, modseq, size, date, tz: b"MODSEQ (%d)" % modseq
    if kind is SimpleKind.RFC822_SIZE:
        return lambda uid, flags, modseq, size, date, tz: b"RFC822.SIZE %d" % size
    return lambda uid, flags, modseq, size, date, tz: b'INTERNALDATE "' + format_internal_date(date, tz) + b'"'


class IndexFetchRenderer:
    """Renders `* seq FETCH (...)` lines for one attribute list."""

    def __init__(self, attributes: tuple[FetchAttribute, ...]) -> None:
        assert from_index(attributes)
        kinds = [a.kind for a in attributes if isinstance(a, SimpleItem)]
        self._pieces = [_piece(k) for k in kinds]
        self.only_uid_flags = kinds == [SimpleKind.UID, SimpleKind.FLAGS]
        self.shows_flags = SimpleKind.FLAGS in kinds

    def line(self, seq: int, uid: int, flags: bytes, modseq: int, size: int = 0, date: int = 0, tz: int = 0) -> bytes:  # noqa: PLR0917
        if self.only_uid_flags:  # what clients send when they open a folder
            return b"* %d FETCH (UID %d FLAGS %s)\r\n" % (seq, uid, flags)
        body = b" ".join(p(uid, flags, modseq, size, date, tz) for p in self._pieces)
        return b"* %d FETCH (%s)\r\n" % (seq, body)
