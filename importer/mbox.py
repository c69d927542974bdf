"""An mbox file as an import source (one folder).

Messages start at a "From " line that begins the file or follows an empty
line; requiring the empty line keeps an unquoted "From " in a body (mboxo
writers miss some) from splitting a message. Body lines quoted as
">From ", ">>From ", ... lose one ">" (mboxrd; for mboxo files this is the
same for the common single-quoted case). The date of the From_ line becomes
the internal date. Flags live in the mbox metadata headers Status (R: \\Seen),
X-Status (A, F, T, D: \\Answered, \\Flagged, \\Draft, \\Deleted; mutt,
Thunderbird, Dovecot) and X-Keywords (space-separated keywords, Dovecot);
like Dovecot's mbox storage, these are mailbox metadata, not part of the
message: they are read into flags and taken out of the stored bytes, and
`mailha export mbox` writes them back (`with_flag_headers`), so a round trip
keeps flags and gives byte-identical messages.
The file is read line by line, so memory holds one message at a time.
"""

from __future__ import annotations

import calendar
import pathlib
import re
import time
from collections.abc import Iterator
from email.utils import parsedate_tz

from importer.source import SourceFolder, SourceMessage, problems_of, to_crlf

_QUOTED_FROM = re.compile(rb"^>+From ")
_STATUS_FLAGS = {ord("R"): "\\Seen"}
_X_STATUS_FLAGS = {ord("A"): "\\Answered", ord("F"): "\\Flagged", ord("T"): "\\Draft", ord("D"): "\\Deleted"}
_FLAG_HEADERS = (b"status", b"x-status", b"x-keywords")
_MAX_KEYWORDS = 100  # a hostile file's X-Keywords line is bounded like IMAP keywords per message


def from_line_date(line: bytes) -> int:
    """Unix time of 'From sender Sat Nov 28 17:41:19 2026' (asctime, UTC); 0 if unparsable."""
    text = line.decode("ascii", "replace").rstrip("\r\n")
    parts = text.split()
    # asctime is the last five fields; some writers append a zone or year variants.
    for cut in (5, 6):
        candidate = " ".join(parts[2 : 2 + cut])
        for fmt in ("%a %b %d %H:%M:%S %Y", "%a %b %d %H:%M:%S %z %Y", "%a %b %d %H:%M %Y"):
            try:
                return calendar.timegm(time.strptime(candidate, fmt))
            except ValueError:
                continue
    return 0


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    """(header block without its final CRLF, the rest from the empty line on)."""
    if data.startswith(b"\r\n"):
        return b"", data
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data, b""
    return data[:end], data[end + 2 :]


def _header_lines(head: bytes) -> list[bytes]:
    """Header fields, each with its folded continuation lines, without line ends."""
    fields: list[bytes] = []
    for line in head.split(b"\r\n") if head else []:
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += b"\r\n" + line
        else:
            fields.append(line)
    return fields


def _field_name(field: bytes) -> bytes:
    name, colon, _value = field.partition(b":")
    return name.strip().lower() if colon else b""


def _header_value(head: bytes, name: bytes) -> bytes | None:
    for field in _header_lines(head):
        if _field_name(field) == name:
            return field.partition(b":")[2].strip()
    return None


def split_flag_headers(data: bytes) -> tuple[tuple[str, ...], bytes]:
    """Flags from Status/X-Status/X-Keywords, and the message without those headers."""
    head, rest = _split_head(data)
    fields = _header_lines(head)
    flags: list[str] = []
    kept: list[bytes] = []
    for field in fields:
        name = _field_name(field)
        if name not in _FLAG_HEADERS:
            kept.append(field)
            continue
        value = field.partition(b":")[2]
        if name == b"x-keywords":
            words = value.decode("utf-8", "replace").split()[:_MAX_KEYWORDS]
            flags += [w for w in words if not w.startswith("\\") and w not in flags]
        else:
            table = _STATUS_FLAGS if name == b"status" else _X_STATUS_FLAGS
            flags += [table[c] for c in value if c in table and table[c] not in flags]
    if len(kept) == len(fields):
        return tuple(flags), data
    return tuple(flags), b"\r\n".join(kept) + (b"\r\n" if kept and rest else b"") + rest


def with_flag_headers(data: bytes, flags: tuple[str, ...] | list[str]) -> bytes:
    """`data` (CRLF lines) with Status/X-Status/X-Keywords saying `flags`, in place of any it had.

    The fields go at the end of the header; a message with no empty line after its header gets
    them in front instead (at its end they would be body). One that also starts with white space
    gets none: in front they would fold its first line into theirs.
    """
    _old, bare = split_flag_headers(data)
    status = b"RO" if "\\Seen" in flags else b"O"
    letters = bytes(c for c, flag in sorted(_X_STATUS_FLAGS.items()) if flag in flags)
    keywords = [f for f in flags if not f.startswith("\\")]
    added = [b"Status: " + status]
    if letters:
        added.append(b"X-Status: " + letters)
    if keywords:
        added.append(b"X-Keywords: " + " ".join(keywords).encode())
    head, rest = _split_head(bare)
    if rest:
        return b"\r\n".join([*([head] if head else []), *added]) + b"\r\n" + rest
    if bare[:1] in (b" ", b"\t"):
        return bare
    return b"\r\n".join(added) + b"\r\n" + bare


def header_date(data: bytes) -> tuple[int, int]:
    """The Date: header as (unix time, zone minutes), a fallback internal date; (0, 0) if none."""
    head, _rest = _split_head(data)
    raw = _header_value(head, b"date")
    if raw:
        parsed = parsedate_tz(raw.decode("ascii", "replace"))
        if parsed is not None:
            offset = parsed[9] or 0
            return calendar.timegm(parsed[:9]) - offset, offset // 60
    return 0, 0


class MboxSource:
    def __init__(self, path: pathlib.Path, mailbox: str = "INBOX") -> None:
        self.path = path
        self.mailbox = mailbox

    def folders(self) -> Iterator[SourceFolder]:
        yield SourceFolder(self.mailbox)

    def estimate(self) -> tuple[int | None, int | None]:
        return None, self.path.stat().st_size

    def acknowledged(self, folder: SourceFolder, message: SourceMessage) -> None:
        return None

    def take_unread(self) -> list[str]:
        return []

    def refused(self, folder: SourceFolder, message: SourceMessage) -> None:
        return None

    def messages(self, folder: SourceFolder) -> Iterator[SourceMessage]:
        number = 0
        from_line = b""
        lines: list[bytes] = []
        previous_empty = True
        with open(self.path, "rb") as f:
            for line in f:
                if line.startswith(b"From ") and previous_empty:
                    if from_line or lines:
                        number += 1
                        yield self._message(number, from_line, lines)
                    from_line, lines = line, []
                else:
                    if _QUOTED_FROM.match(line):
                        line = line[1:]
                    lines.append(line)
                previous_empty = line in (b"\n", b"\r\n")
        if from_line or lines:
            number += 1
            yield self._message(number, from_line, lines)

    def _message(self, number: int, from_line: bytes, lines: list[bytes]) -> SourceMessage:
        # The empty line before the next From_ line is the separator, not content.
        if lines and lines[-1] in (b"\n", b"\r\n"):
            lines = lines[:-1]
        flags, data = split_flag_headers(to_crlf(b"".join(lines)))
        fallback_date, tz = header_date(data)
        date = from_line_date(from_line) if from_line else 0
        problems = problems_of(data)
        if not from_line:
            problems = ("text before the first From_ line", *problems)
        if date:
            tz = 0
        return SourceMessage(
            data=data,
            flags=flags,
            internal_date=date or fallback_date,
            tz_offset_minutes=tz,
            origin=f"{self.path.name} message {number}",
            problems=problems,
        )
