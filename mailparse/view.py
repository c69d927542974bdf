"""What the renderer and the search evaluator see of one message.

The session builds a `MessageView` from what the store returned: metadata
always, the header block and/or the full message only when the FETCH or
SEARCH needs them (fetch_spec.data_needs / search_spec.search_needs).
`ParsedMessage` parses lazily and only once per view; it lives as long as
the caller keeps it (one message of one command), so nothing accumulates.
"""

from __future__ import annotations

from typing import NamedTuple

from mailparse.errors import MissingMessageData
from mailparse.headers import HeaderField, header_end, parse_fields
from mailparse.mime_tree import Part, parse_message


class MessageView(NamedTuple):
    """Immutable; a named tuple, built in C: one is made per message of every FETCH and
    SEARCH, and a frozen dataclass's __init__ (object.__setattr__ per field) showed in profiles."""

    uid: int
    modseq: int
    flags: tuple[str, ...]
    internal_date: int  # unix seconds
    tz_offset_minutes: int
    size: int
    header: bytes | None = None  # header block incl. the blank line
    chunks: tuple[bytes, ...] | None = None  # the whole message, in pieces as they arrived
    recent: bool = False  # \Recent is per session, not stored
    # What the store keeps beside the record, when asked (DataNeeds.facts):
    save_date: int | None = None  # unix seconds (SAVEDATE)
    email_id: int | None = None  # shared by copies (OBJECTID EMAILID)
    preview: str | None = None  # RFC 8970; None: not known


class ParsedMessage:
    """Lazy parse results of one MessageView."""

    __slots__ = ("_fields", "_full", "_header", "_tree", "view")

    def __init__(self, view: MessageView) -> None:
        self.view = view
        self._full: bytes | None = None
        self._header: bytes | None = None
        self._fields: list[HeaderField] | None = None
        self._tree: Part | None = None

    def full(self) -> bytes:
        if self._full is None:
            if self.view.chunks is None:
                raise MissingMessageData(f"uid {self.view.uid}: message bytes were not fetched")
            chunks = self.view.chunks
            self._full = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self._full

    def header(self) -> bytes:
        """The top-level header block; from the full message when we have it (one rule for both)."""
        if self._header is None:
            if self.view.chunks is not None:
                full = self.full()
                self._header = full[: header_end(full)]
            elif self.view.header is not None:
                # The store cuts at the first blank line; we also stop at a line that is
                # not a field (a message without header), so cut again for one rule.
                stored = self.view.header
                self._header = stored[: header_end(stored)]
            else:
                raise MissingMessageData(f"uid {self.view.uid}: header was not fetched")
        return self._header

    def fields(self) -> list[HeaderField]:
        if self._fields is None:
            self._fields = parse_fields(self.header())
        return self._fields

    def tree(self) -> Part:
        if self._tree is None:
            self._tree = parse_message(self.full())
        return self._tree
