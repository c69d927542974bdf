"""RFC 5322 address lists to ENVELOPE address structures, tolerant of junk.

An ENVELOPE address is (name adl mailbox host); a group is opened by
(NIL NIL "group" NIL) and closed by (NIL NIL NIL NIL) (RFC 3501 7.4.2).
Encoded words stay raw, as RFC 3501 requires. Broken input never raises:
missing parts become "MISSING_MAILBOX"/"MISSING_DOMAIN" (what Dovecot does),
so a client never mistakes a broken address for a group marker.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

_MAX_ADDRESSES: Final = 1000  # a header with more is abuse; the rest is dropped
# Only this much of a field value is read: more is abuse, and the tolerant
# parser below works token by token in Python.
MAX_ADDRESS_VALUE: Final = 32 * 1024
MISSING_MAILBOX: Final = b"MISSING_MAILBOX"
MISSING_DOMAIN: Final = b"MISSING_DOMAIN"

# Token kinds
_ATOM: Final = 0
_QUOTED: Final = 1
_LITERAL: Final = 2  # [domain literal]
_SPECIAL: Final = 3
_COMMENT: Final = 4  # its text: the display name of an address that has none (as Dovecot does)


@dataclass(frozen=True, slots=True)
class Address:
    """One address, or a group marker: start (mailbox=group name, host None) or end (all None)."""

    name: bytes | None
    adl: bytes | None
    mailbox: bytes | None
    host: bytes | None


GROUP_END: Final = Address(None, None, None, None)


# One token at a position: blanks, a comment opener, a quoted string (an
# unterminated one runs to the end), a domain literal, a special, or an atom.
_TOKEN: Final = re.compile(
    rb"""[ \t\r\n]+|(\()|"((?:[^"\\]|\\.)*)"?|(\[[^\]]*\]?)|([)<>@,;:\\.\[\]"])|([^()<>@,;:\\".\[\] \t\r\n]+)""",
    re.S,
)
_QUOTED_PAIR: Final = re.compile(rb"\\(.)", re.S)


def _skip_comment(value: bytes, i: int) -> int:
    """Position after the (possibly nested, possibly unterminated) comment opening at value[i]."""
    depth = 0
    n = len(value)
    while i < n:
        c = value[i]
        if c == 0x5C:
            i += 1
        elif c == 0x28:
            depth += 1
        elif c == 0x29:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _tokenize(value: bytes) -> Iterator[tuple[int, bytes]]:
    """Tokens one by one, so a parser that stops early never holds them all."""
    pos, n = 0, len(value)
    match = _TOKEN.match
    while pos < n:
        m = match(value, pos)
        if m is None:  # unreachable in practice: every byte starts some alternative
            pos += 1
            continue
        kind = m.lastindex
        if kind == 1:
            end = _skip_comment(value, pos)
            text = value[pos + 1 : end - 1 if value[end - 1 : end] == b")" else end]
            pos = end
            yield (_COMMENT, b" ".join(_QUOTED_PAIR.sub(rb"\1", text).split()))
            continue
        pos = m.end()
        if kind == 2:
            text = m.group(2)
            if b"\\" in text:
                text = _QUOTED_PAIR.sub(rb"\1", text)
            if b"\r" in text or b"\n" in text:
                text = text.replace(b"\r", b"").replace(b"\n", b"")
            yield (_QUOTED, text)
        elif kind == 3:
            yield (_LITERAL, m.group(3))
        elif kind == 4:
            yield (_SPECIAL, m.group(4))
        elif kind == 5:
            yield (_ATOM, m.group(5))


def _phrase(tokens: list[tuple[int, bytes]]) -> bytes | None:
    """Display name: words joined by one space; "." sticks to the word before it."""
    out = bytearray()
    for kind, text in tokens:
        if kind == _SPECIAL and text == b".":
            out += b"."
            continue
        if kind == _SPECIAL:
            continue
        if out:
            out += b" "
        out += text
    return bytes(out) if out else None


def _quote_local(kind: int, text: bytes) -> bytes:
    if kind == _QUOTED:
        return b'"' + text.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return text


def _addr_spec(tokens: list[tuple[int, bytes]]) -> tuple[bytes | None, bytes | None]:
    """(mailbox, host) of local@domain; the last "@" splits them."""
    at = -1
    for idx, (kind, text) in enumerate(tokens):
        if kind == _SPECIAL and text == b"@":
            at = idx
    local_tokens = tokens if at < 0 else tokens[:at]
    domain_tokens = [] if at < 0 else tokens[at + 1 :]
    local = b"".join(_quote_local(k, t) for k, t in local_tokens if k != _SPECIAL or t == b".")
    domain = b"".join(t for k, t in domain_tokens if k != _SPECIAL or t == b".")
    return (local or None), (domain or None)


def _route_split(tokens: list[tuple[int, bytes]]) -> tuple[bytes | None, list[tuple[int, bytes]]]:
    """Split an obsolete source route "@a,@b:" off the front of an angle-addr."""
    for idx, (kind, text) in enumerate(tokens):
        if kind == _SPECIAL and text == b":":
            route = b"".join(t for _, t in tokens[:idx])
            return (route or None), tokens[idx + 1 :]
    return None, tokens


def _mailbox(tokens: list[tuple[int, bytes]]) -> Address | None:
    comment = next((t for k, t in tokens if k == _COMMENT and t), None)
    tokens = [tok for tok in tokens if tok[0] != _COMMENT]
    if not tokens:
        return None
    angle = next((i for i, (k, t) in enumerate(tokens) if k == _SPECIAL and t == b"<"), -1)
    if angle >= 0:
        close = next((i for i, (k, t) in enumerate(tokens) if i > angle and k == _SPECIAL and t == b">"), len(tokens))
        name = _phrase(tokens[:angle])
        adl, inner = _route_split(tokens[angle + 1 : close])
        mailbox, host = _addr_spec(inner)
        if mailbox is None and host is None and name is None:
            return None
    else:
        name, adl = comment, None  # "user@domain (Real Name)"
        mailbox, host = _addr_spec(tokens)
        if mailbox is None and host is None:
            return None
    return Address(name, adl, mailbox or MISSING_MAILBOX, host or MISSING_DOMAIN)


# The common case, "Name" <a@b>, Name <a@b> or a@b separated by commas, without
# comments, groups, routes or escapes; it gives what the general parser gives.
_ADDR_CHARS: Final = rb'[^<>@\s"(),;:\\\[\]]+'
_SIMPLE_ITEM: Final = re.compile(
    rb'[ \t\r\n]*(?:(?:"([^"\\\r\n]*)"|([^"<>,;:@()\\.\[\]]*?))[ \t\r\n]*<(%s)@(%s)>|(%s)@(%s))[ \t\r\n]*(?:,|\Z)'
    % ((_ADDR_CHARS,) * 4)
)


def _parse_simple(value: bytes) -> list[Address] | None:
    out: list[Address] = []
    pos, n = 0, len(value)
    match = _SIMPLE_ITEM.match
    while pos < n and len(out) < _MAX_ADDRESSES:
        m = match(value, pos)
        if m is None or m.end() == pos:
            return None
        quoted, phrase, mailbox, host, bare_mailbox, bare_host = m.groups()
        if mailbox is not None:
            name = quoted if quoted is not None else b" ".join(phrase.split())
            out.append(Address(name or None, None, mailbox, host))
        else:
            out.append(Address(None, None, bare_mailbox, bare_host))
        pos = m.end()
    return out


def parse_addresses(value: bytes) -> list[Address]:
    """Addresses and group markers of one header value (unfolded or not)."""
    value = value[:MAX_ADDRESS_VALUE]
    simple = _parse_simple(value)
    if simple is not None:
        return simple
    return parse_addresses_general(value)


def parse_addresses_general(value: bytes) -> list[Address]:
    """The full tolerant parser (groups, comments, routes, quoted pairs, junk)."""
    out: list[Address] = []
    current: list[tuple[int, bytes]] = []
    in_group = False
    in_angle = False

    def flush() -> None:
        addr = _mailbox(current)
        if addr is not None and len(out) < _MAX_ADDRESSES:
            out.append(addr)
        current.clear()

    for kind, text in _tokenize(value):
        if len(out) >= _MAX_ADDRESSES:
            break  # the rest is dropped; an open group is still closed below
        if kind == _SPECIAL:
            if text == b"<":
                in_angle = True
            elif text == b">":
                in_angle = False
            elif not in_angle and text == b",":
                flush()
                continue
            elif not in_angle and text == b";":
                flush()
                if in_group:
                    out.append(GROUP_END)
                    in_group = False
                continue
            elif (
                not in_angle
                and text == b":"
                and not in_group
                and not any(k == _SPECIAL and t == b"@" for k, t in current)
            ):
                words = [tok for tok in current if tok[0] != _COMMENT]
                out.append(Address(None, None, _phrase(words) or b"", None))
                in_group = True
                current.clear()
                continue
        current.append((kind, text))
    flush()
    if in_group:
        out.append(GROUP_END)
    return out
