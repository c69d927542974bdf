"""IMAP data values used in responses, and their wire encoding.

Response builders (FETCH items, LIST, STATUS, ...) produce trees of these
values; `encode` turns a tree into bytes and `encode_chunks` into a stream of
chunks so a 20 MiB body literal is never copied into one big buffer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

_QUOTED_SAFE: Final = frozenset(range(0x20, 0x7F)) - {ord('"'), ord("\\")}
_ATOM_SPECIALS: Final = frozenset(b'(){ %*"\\]') | frozenset(range(0x00, 0x20)) | {0x7F}
_MAX_QUOTED: Final = 1024


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


def encode_chunks(value: Value) -> Iterator[bytes]:
    """Yield the wire form of `value` in pieces (never joins big literals)."""
    if isinstance(value, Atom):
        yield value.value.encode("ascii")
    elif isinstance(value, Number):
        yield str(value.value).encode("ascii")
    elif isinstance(value, String):
        data = value.value
        if len(data) <= _MAX_QUOTED and all(b in _QUOTED_SAFE for b in data):
            yield b'"' + data + b'"'
        else:
            yield b"{%d}\r\n" % len(data)
            yield data
    elif isinstance(value, Literal):
        yield b"{%d}\r\n" % len(value.value)
        yield value.value
    elif isinstance(value, ChunkedLiteral):
        yield b"{%d}\r\n" % value.size
        yield from value.chunks
    elif isinstance(value, _NilType):
        yield b"NIL"
    elif isinstance(value, List):
        yield b"("
        for i, item in enumerate(value.items):
            if i:
                yield b" "
            yield from encode_chunks(item)
        yield b")"
    else:
        yield value.value


def encode(value: Value) -> bytes:
    return b"".join(encode_chunks(value))
