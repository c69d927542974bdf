"""Cheap header-block handling on raw bytes.

ENVELOPE and most SEARCH keys need only the header block, so this module
works on bytes without building a MIME tree: split header from body, list
the fields with their exact raw lines (HEADER.FIELDS must echo them
unchanged) and unfold values.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

_MAX_NAME: Final = 256  # longer "field names" are body text, not a header
# A header block ends here at the latest (as the store's header block does):
# longer ones are abuse, and the rest is read as body.
MAX_HEADER: Final = 1024 * 1024


class HeaderField(NamedTuple):
    """One field (a NamedTuple: built by the thousand, and a frozen dataclass is slow to build)."""

    name: bytes  # lower-cased, for case-insensitive matching
    raw: bytes  # the field's lines exactly as stored, incl. line endings

    @property
    def value(self) -> bytes:
        """The unfolded value: after the colon, folding line breaks removed, outer blanks stripped."""
        colon = self.raw.find(b":")
        return unfold(self.raw[colon + 1 :])


def unfold(value: bytes) -> bytes:
    if b"\n" in value:
        value = value.replace(b"\r\n", b"").replace(b"\n", b"")
    return value.strip(b" \t\r")


# A header block of well-formed fields (checked in one C-level match before
# falling back to the line-by-line reading of odd headers).
_CLEAN_BLOCK: Final = re.compile(rb"(?:[!-9;-~]{1,%d}[ \t]*:[^\n]*\n(?:[ \t][^\n]*\n)*)*" % _MAX_NAME)
_BLANK_LINE: Final = re.compile(rb"\n\r?\n")


def header_end(data: bytes, start: int = 0, end: int | None = None) -> int:
    """Offset just after the header block of data[start:end] (after its blank line, when there is one).

    The header ends at the first empty line; a line that is neither a field nor
    a continuation also ends it (without being consumed), so a message without
    headers is all body instead of all header. It never exceeds MAX_HEADER.
    """
    stop = min(len(data) if end is None else end, start + MAX_HEADER)
    blank = _BLANK_LINE.search(data, start, stop)
    if blank is not None and _CLEAN_BLOCK.fullmatch(data, start, blank.start() + 1):
        return blank.end()
    # Skip the well-formed lines at C speed; read only the odd rest line by line.
    clean = _CLEAN_BLOCK.match(data, start, stop)
    clean_end = start if clean is None else clean.end()
    return header_end_by_lines(data, clean_end, stop, first=clean_end == start)


def header_end_by_lines(data: bytes, start: int, stop: int, first: bool = True) -> int:
    """The general (slow) reading of `header_end`, line by line; `first` says no field precedes `start`."""
    pos = start
    while pos < stop:
        nl = data.find(b"\n", pos, stop)
        line_end = stop if nl < 0 else nl + 1
        line = data[pos:line_end]
        if line in (b"\r\n", b"\n"):
            return line_end
        if line[:1] in (b" ", b"\t"):
            if first:
                return pos  # a continuation with nothing to continue: body
        elif not _is_field_start(line):
            return pos
        first = False
        pos = line_end
    return stop


def _is_field_start(line: bytes) -> bool:
    colon = line.find(b":", 0, _MAX_NAME + 1)
    if colon <= 0:
        return False
    name = line[:colon].rstrip(b" \t")  # obsolete syntax allows blanks before the colon
    return bool(name) and all(0x21 <= b <= 0x7E for b in name)


def split_message(data: bytes, start: int = 0, end: int | None = None) -> tuple[int, int]:
    """(header_end, end) offsets: header is data[start:header_end], body data[header_end:end]."""
    stop = len(data) if end is None else end
    return header_end(data, start, stop), stop


# A field: a name of printable characters (no colon), optional blanks, a colon, the
# rest of the line and every continuation line. Lines that match nothing are junk
# inside the block and skipped, as are continuations of junk.
_FIELD: Final = re.compile(rb"^([!-9;-~]{1,%d})[ \t]*:[^\n]*(?:\n[ \t][^\n]*)*\n?" % _MAX_NAME, re.M)


def parse_fields(header: bytes) -> list[HeaderField]:
    """Every field of a header block, in order, with its continuation lines."""
    return [HeaderField(m.group(1).lower(), m.group(0)) for m in _FIELD.finditer(header)]


def field_matcher(names: frozenset[bytes]) -> re.Pattern[bytes]:
    """A pattern finding only the fields called `names` (any case), for `first_values`."""
    alternatives = b"|".join(re.escape(n) for n in sorted(names))
    return re.compile(rb"^(%s)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)" % alternatives, re.M | re.I)


def prefix_matcher(prefix: bytes) -> re.Pattern[bytes]:
    """A pattern finding only the fields whose name starts with `prefix` (any case)."""
    return re.compile(rb"^(%s[!-9;-~]*)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)" % re.escape(prefix), re.M | re.I)


def first_values(header: bytes, matcher: re.Pattern[bytes]) -> dict[bytes, bytes]:
    """Unfolded values of the first field of each name `matcher` finds, keyed by lower-case name.

    The other fields (Received, DKIM-Signature, ...) are skipped by the regex engine.
    """
    found: dict[bytes, bytes] = {}
    for m in matcher.finditer(header):
        name = m.group(1).lower()
        if name not in found:
            found[name] = unfold(m.group(2))
    return found


def first_value(fields: list[HeaderField], name: bytes) -> bytes | None:
    """Unfolded value of the first field called `name` (lower case), None if absent."""
    for field in fields:
        if field.name == name:
            return field.value
    return None


def select_fields(header: bytes, names: tuple[str, ...], exclude: bool) -> bytes:
    """HEADER.FIELDS / HEADER.FIELDS.NOT: the matching field lines then a blank line (RFC 3501 6.4.5)."""
    wanted = {n.lower().encode("ascii", "replace") for n in names}
    out = [
        f.raw if f.raw.endswith(b"\n") else f.raw + b"\r\n"
        for f in parse_fields(header)
        if (f.name in wanted) != exclude
    ]
    out.append(b"\r\n")
    return b"".join(out)
