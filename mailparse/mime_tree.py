"""A MIME tree over the raw message bytes, kept as offsets.

Offsets (not copies) keep BODY[section] bytes and BODYSTRUCTURE sizes exact
and parsing cheap. Broken input is read as leniently as it can be and never
raises: a multipart without a usable boundary or without any body part is
read as text/plain, a truncated multipart ends at the end of the data,
nesting deeper than `MAX_DEPTH` and encoded message/rfc822 parts become
application/octet-stream leaves (RFC 2046 5.2.1 forbids encoding them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from mailparse.content_fields import TypedValue, parse_typed
from mailparse.headers import first_values, header_end, prefix_matcher

MAX_DEPTH: Final = 24  # nesting of multipart / message parts we follow
MAX_PARTS: Final = 2000  # body parts per message; later ones are ignored

TEXT_PLAIN: Final = TypedValue(b"TEXT", b"PLAIN", ((b"CHARSET", b"US-ASCII"),))
MESSAGE_RFC822: Final = TypedValue(b"MESSAGE", b"RFC822", ())
OCTET_STREAM: Final = TypedValue(b"APPLICATION", b"OCTET-STREAM", ())
_IDENTITY_ENCODINGS: Final = frozenset({b"", b"7BIT", b"8BIT", b"BINARY"})


@dataclass(slots=True)
class Part:
    """One entity: its header block is data[start:body_start], its body data[body_start:end]."""

    data: bytes
    start: int
    body_start: int
    end: int
    content_type: TypedValue
    mime_fields: dict[bytes, bytes]  # first value of each Content-* field, by lower-case name
    children: tuple[Part, ...] = ()
    message: Part | None = None  # the embedded message of a message/rfc822 part

    @property
    def header(self) -> bytes:
        return self.data[self.start : self.body_start]

    @property
    def body(self) -> bytes:
        return self.data[self.body_start : self.end]

    @property
    def body_size(self) -> int:
        return self.end - self.body_start

    @property
    def body_lines(self) -> int:
        return text_lines(self.data, self.body_start, self.end)

    @property
    def is_multipart(self) -> bool:
        return bool(self.children)

    def field_value(self, name: bytes) -> bytes | None:
        """A Content-* field's unfolded value (other fields are not kept)."""
        return self.mime_fields.get(name)

    @property
    def encoding(self) -> bytes:
        """Content-Transfer-Encoding, upper-cased; b"" when absent."""
        value = self.field_value(b"content-transfer-encoding")
        return b"" if value is None else value.split(b"(")[0].strip().upper()

    def numbered_children(self) -> tuple[Part, ...]:
        """The parts numbered 1..n below this one in section specs (RFC 3501 6.4.5)."""
        if self.children:
            return self.children
        if self.message is not None:
            return self.message.children or (self.message,)
        return ()


class _Budget:
    """Counts parts across the whole tree so a million boundaries cannot blow up memory."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts = 0


def parse_message(data: bytes) -> Part:
    """The tree of a whole message; never raises."""
    return _parse_entity(data, 0, len(data), default=TEXT_PLAIN, depth=0, budget=_Budget())


# Only Content-* fields matter for structure: a part's other fields are never listed.
_MIME_FIELDS: Final = prefix_matcher(b"content-")


def _content_type(fields: dict[bytes, bytes], default: TypedValue) -> TypedValue:
    raw = fields.get(b"content-type")
    if raw is None:
        return default
    parsed = parse_typed(raw, with_subtype=True)
    if not parsed.main or not parsed.sub:
        return TEXT_PLAIN  # RFC 2045 5.2: an unreadable Content-Type means text/plain
    return parsed


def _parse_entity(data: bytes, start: int, end: int, *, default: TypedValue, depth: int, budget: _Budget) -> Part:
    budget.parts += 1
    body_start = header_end(data, start, end)
    fields = first_values(data[start:body_start], _MIME_FIELDS)
    ctype = _content_type(fields, default)
    part = Part(data, start, body_start, end, ctype, fields)
    if ctype.main == b"MULTIPART":
        _split_multipart(part, depth, budget)
    elif ctype.main == b"MESSAGE" and ctype.sub == b"RFC822":
        if depth >= MAX_DEPTH or part.encoding not in _IDENTITY_ENCODINGS:
            part.content_type = OCTET_STREAM
        else:
            part.message = _parse_entity(data, body_start, end, default=TEXT_PLAIN, depth=depth + 1, budget=budget)
    return part


def _split_multipart(part: Part, depth: int, budget: _Budget) -> None:
    boundary = part.content_type.param(b"BOUNDARY")
    spans = [] if not boundary or depth >= MAX_DEPTH else _part_spans(part.data, part.body_start, part.end, boundary)
    if not spans:
        part.content_type = OCTET_STREAM if depth >= MAX_DEPTH else TEXT_PLAIN
        return
    default = MESSAGE_RFC822 if part.content_type.sub == b"DIGEST" else TEXT_PLAIN
    children: list[Part] = []
    for lo, hi in spans:
        if budget.parts >= MAX_PARTS:
            break
        children.append(_parse_entity(part.data, lo, hi, default=default, depth=depth + 1, budget=budget))
    part.children = tuple(children)


def _part_spans(data: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """(start, end) of each body part between delimiter lines; the line break before a delimiter is its own.

    The pattern starts with a literal line break, so the regex engine scans
    for it at memchr-like speed and only real delimiter lines ("--b" or
    "--b--", optional padding) match: junk that merely contains the boundary
    costs nothing in Python.
    """
    line = rb"--" + re.escape(boundary) + rb"(--)?[ \t\r]*(?=\n|\Z)"
    delimiter = re.compile(rb"\n" + line)
    spans: list[tuple[int, int]] = []
    part_start = -1
    pos = start
    first = re.compile(line).match(data, start, end)  # a delimiter on the very first line
    if first is not None:
        if first.group(1) is not None:
            return spans
        part_start, pos = min(first.end() + 1, end), first.end()
    while len(spans) < MAX_PARTS:
        m = delimiter.search(data, pos, end)
        if m is None:
            break
        if part_start >= 0:
            content_end = max(m.start(), part_start)  # the line break before the delimiter is not content
            if content_end > part_start and data[content_end - 1] == 0x0D:
                content_end -= 1
            spans.append((part_start, content_end))
        if m.group(1) is not None:
            return spans
        # The part starts past the delimiter's line break; the search resumes on that
        # line break, which may already open the next delimiter (an empty part).
        part_start, pos = min(m.end() + 1, end), m.end()
    if part_start >= 0:
        spans.append((part_start, end))  # truncated: the last part runs to the end
    return spans


def text_lines(data: bytes, start: int = 0, end: int | None = None) -> int:
    """Lines of data[start:end] as BODYSTRUCTURE counts them: line breaks, as Dovecot counts them
    (a part's last line before a MIME boundary has none of its own: that CRLF belongs to the boundary)."""
    stop = len(data) if end is None else end
    return data.count(b"\n", start, stop)
