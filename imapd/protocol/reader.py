"""Token reader over one framed command: text segments with literals between them.

The framing layer (parser.py) hands over a command as `segments` (the text of
each line, the literal announcement already cut off) and `literals` (the bytes
of each literal): segment 0, literal 0, segment 1, literal 1, ... A string
that sits exactly at the end of a segment with a literal after it is that
literal. Tokens are matched with precompiled regexes at a position (one
regex call per token, never per byte).
"""

from __future__ import annotations

import datetime
import re
from typing import Final

from imapd.protocol import mutf7
from imapd.protocol.errors import MUtf7Error, ParseError

# ATOM-CHAR: any CHAR except atom-specials ( ) { SP CTL % * " \ ]
_ATOM: Final = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\\]]+")
# ASTRING-CHAR adds "]"
_ASTRING_ATOM: Final = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\]+")
# list-mailbox: ATOM-CHAR, list-wildcards and resp-specials
_LIST_ATOM: Final = re.compile(rb"[^\x00-\x20\x7f-\xff(){\"\\]+")
# The same with 8-bit bytes, for mailbox names once UTF8=ACCEPT is on (clients such as
# Python's imaplib then send UTF-8 names as atoms).
_UTF8_ASTRING_ATOM: Final = re.compile(rb"[^\x00-\x20\x7f(){%*\"\\]+")
_UTF8_LIST_ATOM: Final = re.compile(rb"[^\x00-\x20\x7f(){\"\\]+")
# Quoted strings may carry 8-bit bytes (UTF8=ACCEPT clients) but never CR, LF or NUL.
_QUOTED: Final = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_NUMBER: Final = re.compile(rb"[0-9]+")
_SEQ_SET: Final = re.compile(rb"[0-9*:,$]+")
_FLAG: Final = re.compile(rb"\\?[^\x00-\x20\x7f-\xff(){%*\"\\\]]+|\\\*")
# date-day-fixed is " 7" or "07"; a bare "7" is accepted too (some clients send it).
_DATE_TIME: Final = re.compile(
    rb'"([ 0-9]?[0-9])-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{4})"'
)
_DATE: Final = re.compile(rb'("?)([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})\1')
_MONTH_NAMES: Final = b"JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
_MONTHS: Final = {m: i + 1 for i, m in enumerate(_MONTH_NAMES)}
_SYSTEM_FLAGS: Final = {
    f.upper(): f.decode("ascii")
    for f in (b"\\Seen", b"\\Answered", b"\\Flagged", b"\\Deleted", b"\\Draft", b"\\Recent", b"\\*")
}
_MAX_NUMBER: Final = 0xFFFFFFFF
_MAX_NUMBER64: Final = 0x7FFFFFFFFFFFFFFF


class Reader:
    """A cursor over one command. Every method raises ParseError on bad input."""

    __slots__ = ("_binary", "_buf", "_index", "_literals", "_pos", "_segments", "utf8_names")

    def __init__(
        self,
        segments: list[bytes],
        literals: list[bytes] | None = None,
        binary: list[bool] | None = None,
        *,
        utf8_names: bool = False,
    ) -> None:
        self._segments = segments
        self._literals = literals or []
        self._binary = binary or [False] * len(self._literals)
        self._index = 0
        self._buf = segments[0]
        self._pos = 0
        self.utf8_names = utf8_names

    # --- position ----------------------------------------------------------

    def _literal_here(self) -> bool:
        return self._pos == len(self._buf) and self._index < len(self._literals)

    def at_end(self) -> bool:
        return self._pos == len(self._buf) and self._index == len(self._segments) - 1

    def end(self) -> None:
        if not self.at_end():
            raise ParseError("unexpected extra arguments")

    def peek(self) -> int:
        """The next byte, or -1 at the end of a segment."""
        if self._pos < len(self._buf):
            return self._buf[self._pos]
        return -1

    def peek_word(self) -> bytes:
        """The next atom-like word upper-cased, without consuming it (b"" if none)."""
        m = _ATOM.match(self._buf, self._pos)
        return m.group().upper() if m else b""

    def sp(self) -> None:
        if self._pos < len(self._buf) and self._buf[self._pos] == 0x20:
            self._pos += 1
        else:
            raise ParseError("expected a space")

    def maybe_sp(self) -> bool:
        if self._pos < len(self._buf) and self._buf[self._pos] == 0x20:
            self._pos += 1
            return True
        return False

    def expect(self, byte: int) -> None:
        if self._pos < len(self._buf) and self._buf[self._pos] == byte:
            self._pos += 1
        else:
            raise ParseError(f"expected {chr(byte)!r}")

    def maybe(self, byte: int) -> bool:
        if self._pos < len(self._buf) and self._buf[self._pos] == byte:
            self._pos += 1
            return True
        return False

    def _match(self, pattern: re.Pattern[bytes], what: str) -> re.Match[bytes]:
        m = pattern.match(self._buf, self._pos)
        if m is None:
            raise ParseError(f"expected {what}")
        self._pos = m.end()
        return m

    def read_pattern(self, pattern: re.Pattern[bytes], what: str) -> bytes:
        return self._match(pattern, what).group()

    def maybe_pattern(self, pattern: re.Pattern[bytes]) -> bytes | None:
        m = pattern.match(self._buf, self._pos)
        if m is None:
            return None
        self._pos = m.end()
        return m.group()

    # --- tokens ------------------------------------------------------------

    def atom(self) -> bytes:
        return self._match(_ATOM, "an atom").group()

    def keyword(self) -> str:
        """An atom upper-cased as str (command names, options)."""
        return self._match(_ATOM, "a keyword").group().upper().decode("ascii")

    def number(self, limit: int = _MAX_NUMBER) -> int:
        digits = self._match(_NUMBER, "a number").group()
        if len(digits) > 20:  # also keeps int() clear of Python's digit-count limit
            raise ParseError("number out of range")
        value = int(digits)
        if value > limit:
            raise ParseError("number out of range")
        return value

    def nz_number(self) -> int:
        value = self.number()
        if value == 0:
            raise ParseError("number must not be zero")
        return value

    def number64(self) -> int:
        return self.number(_MAX_NUMBER64)

    def literal(self, *, binary_ok: bool = False) -> bytes:
        """The literal here; literal8 (~{n}) only where the grammar allows it (APPEND messages)."""
        if not self._literal_here():
            raise ParseError("expected a literal")
        if self._binary[self._index] and not binary_ok:
            raise ParseError("literal8 is only allowed for APPEND message data")
        data = self._literals[self._index]
        self._index += 1
        self._buf = self._segments[self._index]
        self._pos = 0
        return data

    def literal_is_binary(self) -> bool:
        return self._literal_here() and self._binary[self._index]

    def quoted(self) -> bytes:
        m = self._match(_QUOTED, "a quoted string")
        raw = m.group(1)
        if b"\\" in raw:
            raw = raw.replace(b"\\\\", b"\x00").replace(b'\\"', b'"').replace(b"\x00", b"\\")
        return raw

    def string(self) -> bytes:
        if self._literal_here():
            return self.literal()
        return self.quoted()

    def astring(self) -> bytes:
        if self._literal_here():
            return self.literal()
        if self.peek() == 0x22:
            return self.quoted()
        return self._match(_ASTRING_ATOM, "an astring").group()

    def nstring(self) -> bytes | None:
        if self.peek_word() == b"NIL":
            self._pos += 3
            return None
        return self.string()

    def utf8(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("invalid UTF-8") from None

    def astring_str(self) -> str:
        return self.utf8(self.astring())

    def mailbox(self) -> str:
        if self.utf8_names and not self._literal_here() and self.peek() != 0x22:
            return self._mailbox_name(self._match(_UTF8_ASTRING_ATOM, "a mailbox name").group())
        return self._mailbox_name(self.astring())

    def mailbox_or_server(self) -> str:
        """A mailbox name, or "" for the server (METADATA, RFC 5464)."""
        raw = self.astring()
        return self._mailbox_name(raw) if raw else ""

    def list_mailbox(self) -> str:
        if self._literal_here() or self.peek() == 0x22:
            raw = self.string()
        else:
            raw = self._match(_UTF8_LIST_ATOM if self.utf8_names else _LIST_ATOM, "a mailbox pattern").group()
        return self._mailbox_name(raw, inbox=False)

    def _mailbox_name(self, raw: bytes, inbox: bool = True) -> str:
        if inbox and raw.upper() == b"INBOX":
            return "INBOX"
        if self.utf8_names and any(b > 0x7F for b in raw):
            return self.utf8(raw)
        try:
            return mutf7.decode(raw)
        except MUtf7Error:
            if any(b < 0x20 or b > 0x7E for b in raw):
                raise  # 8-bit or control bytes: not a mailbox name at all
            return mutf7.UndecodableName(raw.decode("ascii"))

    def sequence_set(self) -> bytes:
        return self._match(_SEQ_SET, "a sequence set").group()

    def flag(self) -> str:
        raw = self._match(_FLAG, "a flag").group()
        if raw[0] == 0x5C:
            return _SYSTEM_FLAGS.get(raw.upper()) or raw.decode("ascii")
        return raw.decode("ascii")

    def flag_list(self) -> tuple[str, ...]:
        self.expect(0x28)
        flags: list[str] = []
        if not self.maybe(0x29):
            flags.append(self.flag())
            while self.maybe_sp():
                flags.append(self.flag())
            self.expect(0x29)
        return tuple(flags)

    def flags_maybe_parenthesised(self) -> tuple[str, ...]:
        """STORE accepts "(a b)" or bare "a b"."""
        if self.peek() == 0x28:
            return self.flag_list()
        flags = [self.flag()]
        while self.maybe_sp():
            flags.append(self.flag())
        return tuple(flags)

    def date_time(self) -> datetime.datetime:
        m = self._match(_DATE_TIME, "a date-time")
        day, mon, year, hh, mm, ss, sign, zone = m.groups()
        month = _MONTHS.get(mon.upper())
        if month is None:
            raise ParseError("invalid month")
        offset = datetime.timedelta(hours=int(zone[:2]), minutes=int(zone[2:]))
        try:
            return datetime.datetime(
                int(year),
                month,
                int(day),
                int(hh),
                int(mm),
                int(ss),
                tzinfo=datetime.timezone(-offset if sign == b"-" else offset),
            )
        except ValueError:
            raise ParseError("invalid date-time") from None

    def date(self) -> datetime.date:
        m = self._match(_DATE, "a date")
        _quote, day, mon, year = m.groups()
        month = _MONTHS.get(mon.upper())
        if month is None:
            raise ParseError("invalid month")
        try:
            return datetime.date(int(year), month, int(day))
        except ValueError:
            raise ParseError("invalid date") from None
