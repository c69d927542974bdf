"""IMAP data values used in responses, and their wire encoding.

Response builders (FETCH items, LIST, STATUS, ...) produce trees of these
values; `encode` turns a tree into bytes and `encode_chunks` into a stream of
chunks so a 20 MiB body literal is never copied into one big buffer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

_ATOM_SPECIALS: Final = frozenset(b'(){ %*"\\]') | frozenset(range(0x00, 0x20)) | {0x7F}
_MAX_QUOTED: Final = 1024
_QUOTED_OK: Final = re.compile(rb"[\x20\x21\x23-\x5b\x5d-\x7e]*")  # printable ASCII but " and \\


@dataclass(frozen=True, slots=True)
class Atom:
    """An atom or flag written as is (caller guarantees the syntax), e.g. FLAGS, \\Seen."""

    value: str


@dataclass(frozen=True, slots=True)
class Number:
    value: int


@dataclass(frozen=True, slots=True)
class String:
    """A string: quoted when short and safe, otherwise a literal."""

    value: bytes


@dataclass(frozen=True, slots=True)
class Literal:
    """Always a literal {n}: bodies, headers, anything 8-bit."""

    value: bytes


@dataclass(frozen=True, slots=True)
class ChunkedLiteral:
    """A literal whose bytes arrive as chunks (streamed bodies); size must be exact."""

    size: int
    chunks: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class _NilType:
    pass


NIL: Final = _NilType()


@dataclass(frozen=True, slots=True)
class List:
    """A parenthesised list."""

    items: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Raw:
    """Bytes already in wire form (e.g. a section label "BODY[HEADER]<0>")."""

    value: bytes


Value = Atom | Number | String | Literal | ChunkedLiteral | _NilType | List | Raw


def nstring(value: bytes | None) -> Value:
    return NIL if value is None else String(value)


def is_atom_safe(value: bytes) -> bool:
    return bool(value) and not any(b in _ATOM_SPECIALS or b > 0x7F for b in value)


def encode_into(value: Value, out: list[bytes]) -> None:
    """Append the wire form of `value` to `out` in pieces (never joins big literals).

    A plain function appending to one list: a recursive generator yielding each
    piece cost several calls per atom of a FETCH response (issue 13).
    """
    if isinstance(value, Raw):
        out.append(value.value)
    elif isinstance(value, List):
        out.append(b"(")
        first = True
        for item in value.items:
            if first:
                first = False
            else:
                out.append(b" ")
            encode_into(item, out)
        out.append(b")")
    elif isinstance(value, Atom):
        out.append(value.value.encode("ascii"))
    elif isinstance(value, Number):
        out.append(b"%d" % value.value)
    elif isinstance(value, String):
        data = value.value
        if len(data) <= _MAX_QUOTED and _QUOTED_OK.fullmatch(data) is not None:
            out.append(b'"' + data + b'"')
        else:
            out.append(b"{%d}\r\n" % len(data))
            out.append(data)
    elif isinstance(value, Literal):
        out.append(b"{%d}\r\n" % len(value.value))
        out.append(value.value)
    elif isinstance(value, ChunkedLiteral):
        out.append(b"{%d}\r\n" % value.size)
        out.extend(value.chunks)
    else:
        out.append(b"NIL")


def encode_chunks(value: Value) -> Iterator[bytes]:
    """The wire form of `value` in pieces (never joins big literals)."""
    out: list[bytes] = []
    encode_into(value, out)
    return iter(out)


def encode(value: Value) -> bytes:
    out: list[bytes] = []
    encode_into(value, out)
    return b"".join(out)
