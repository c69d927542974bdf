"""An mbox file as an import source (one folder).

Messages start at a "From " line that begins the file or follows an empty
line; requiring the empty line keeps an unquoted "From " in a body (mboxo
writers miss some) from splitting a message. Body lines quoted as
">From ", ">>From ", ... lose one ">" (mboxrd; for mboxo files this is the
same for the common single-quoted case). The date of the From_ line becomes
the internal date; Status/X-Status headers (mutt, Thunderbird) give flags.
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


def _header_value(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n"):
        field, colon, value = line.partition(b":")
        if colon and field.strip().lower() == name:
            return value.strip()
    return None


def flags_and_date(data: bytes) -> tuple[tuple[str, ...], int, int]:
    """Flags from Status/X-Status; the Date: header as a fallback internal date."""
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[:end]
    flags: list[str] = []
    for header, table in ((b"status", _STATUS_FLAGS), (b"x-status", _X_STATUS_FLAGS)):
        value = _header_value(head, header) or b""
        flags += [table[c] for c in value if c in table and table[c] not in flags]
    date = 0
    tz = 0
    raw = _header_value(head, b"date")
    if raw:
        parsed = parsedate_tz(raw.decode("ascii", "replace"))
        if parsed is not None:
            offset = parsed[9] or 0
            date = calendar.timegm(parsed[:9]) - offset
            tz = offset // 60
    return tuple(flags), date, tz


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
        data = to_crlf(b"".join(lines))
        flags, header_date, tz = flags_and_date(data)
        date = from_line_date(from_line) if from_line else 0
        problems = problems_of(data)
        if not from_line:
            problems = ("text before the first From_ line", *problems)
        if date:
            tz = 0
        return SourceMessage(
            data=data,
            flags=flags,
            internal_date=date or header_date,
            tz_offset_minutes=tz,
            origin=f"{self.path.name} message {number}",
            problems=problems,
        )
