"""FETCH attribute syntax (RFC 3501 fetch-att, RFC 3516 BINARY) into fetch_spec values."""

from __future__ import annotations

import re
from typing import Final

from imapd.protocol import fetch_spec as fs
from imapd.protocol.errors import ParseError
from imapd.protocol.reader import Reader

# An attribute name up to "[" or a delimiter: BODY.PEEK, RFC822.SIZE, BINARY.SIZE, ...
_NAME: Final = re.compile(rb"[A-Za-z0-9.]+")
_SECTION_TEXT: Final = {t.value.encode("ascii"): t for t in fs.TextSpec}
_PART: Final = re.compile(rb"[1-9][0-9]{0,8}")
# PREVIEW's modifiers (RFC 8970 "LAZY"; Dovecot's "FUZZY"), as a whole: " (LAZY)", " (FUZZY LAZY)".
_PREVIEW_MODIFIERS: Final = re.compile(rb" \((?:LAZY|FUZZY)(?: (?:LAZY|FUZZY))?\)", re.IGNORECASE)


def fetch_attributes(reader: Reader) -> tuple[fs.FetchAttribute, ...]:
    """ALL | FULL | FAST | fetch-att | "(" fetch-att *(SP fetch-att) ")"."""
    if reader.maybe(0x28):
        attrs = [_attribute(reader)]
        while reader.maybe_sp():
            attrs.append(_attribute(reader))
        reader.expect(0x29)
        return tuple(attrs)
    word = reader.peek_word()
    macro = fs.expand_macro(word.decode("ascii")) if word else None
    if macro is not None:
        reader.atom()
        return macro
    return (_attribute(reader),)


def _attribute(reader: Reader) -> fs.FetchAttribute:
    name = reader.read_pattern(_NAME, "a fetch attribute").upper()
    if name in (b"PREVIEW", b"SNIPPET"):
        return _preview(reader, name)
    if reader.peek() != 0x5B:  # no "["
        simple = fs.SIMPLE_BY_NAME.get(name.decode("ascii"))
        if simple is None:
            raise ParseError(f"unknown fetch attribute {name[:30].decode('ascii', 'replace')}")
        return simple
    reader.expect(0x5B)
    if name in (b"BODY", b"BODY.PEEK"):
        section = _section(reader)
        reader.expect(0x5D)
        return fs.BodySection(section, _partial(reader), peek=name == b"BODY.PEEK")
    if name in (b"BINARY", b"BINARY.PEEK", b"BINARY.SIZE"):
        part = _part_path(reader)
        reader.expect(0x5D)
        if name == b"BINARY.SIZE":
            return fs.BinarySize(part)
        return fs.BinarySection(part, _partial(reader), peek=name == b"BINARY.PEEK")
    raise ParseError("unknown fetch attribute with a section")


def _preview(reader: Reader, name: bytes) -> fs.PreviewItem:
    modifiers = reader.maybe_pattern(_PREVIEW_MODIFIERS)
    words = modifiers[2:-1].upper().split() if modifiers is not None else []
    # SNIPPET only ever had the FUZZY algorithm: Dovecot answers a bare SNIPPET as SNIPPET (FUZZY).
    fuzzy = b"FUZZY" in words or name == b"SNIPPET"
    return fs.PreviewItem(name.decode("ascii"), fuzzy=fuzzy, lazy=b"LAZY" in words)


def _part_path(reader: Reader) -> tuple[int, ...]:
    parts: list[int] = []
    m = reader.maybe_pattern(_PART)
    while m is not None:
        parts.append(int(m))
        if not reader.maybe(0x2E):
            break
        m = reader.maybe_pattern(_PART)
        if m is None:
            raise ParseError("expected a part number")
    return tuple(parts)


def _section(reader: Reader) -> fs.Section:
    parts: list[int] = []
    text: fs.TextSpec | None = None
    while True:
        m = reader.maybe_pattern(_PART)
        if m is not None:
            parts.append(int(m))
            if reader.maybe(0x2E):
                continue
            break
        word = reader.maybe_pattern(_NAME)
        if word is None:
            if parts:
                raise ParseError("expected a section part")
            break
        text = _SECTION_TEXT.get(word.upper())
        if text is None or (text is fs.TextSpec.MIME and not parts):
            raise ParseError("invalid section text")
        break
    fields: tuple[str, ...] = ()
    if text in (fs.TextSpec.HEADER_FIELDS, fs.TextSpec.HEADER_FIELDS_NOT):
        reader.sp()
        reader.expect(0x28)
        names = [reader.astring()]
        while reader.maybe_sp():
            names.append(reader.astring())
        reader.expect(0x29)
        if any(not n or not n.isascii() for n in names):
            raise ParseError("invalid header field name")
        fields = tuple(n.decode("ascii") for n in names)
    try:
        return fs.Section(tuple(parts), text, fields)
    except ValueError as exc:
        raise ParseError(str(exc)) from None


def _partial(reader: Reader) -> fs.Partial | None:
    if not reader.maybe(0x3C):  # "<"
        return None
    origin = reader.number()
    reader.expect(0x2E)
    octets = reader.nz_number()
    reader.expect(0x3E)
    return fs.Partial(origin, octets)


def section_spec(text: bytes) -> fs.Section:
    """A section-spec on its own ("1.2.MIME", "HEADER.FIELDS (TO)"), as an IMAP URL's ;SECTION= carries it."""
    reader = Reader([text])
    section = _section(reader)
    reader.end()
    return section
