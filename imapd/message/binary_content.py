"""BINARY (RFC 3516): the decoded content FETCH BINARY[part] returns, and the
conversion an APPEND of binary content (literal8) gets before it is stored.

A leaf part is its body with the Content-Transfer-Encoding undone. A whole
message, a message/rfc822 part or a multipart part is returned with every
base64 / quoted-printable leaf below it decoded in place and its field
rewritten to "Content-Transfer-Encoding: binary" (as Dovecot does), so the
client never has to decode anything. An encoding we do not know fails the
FETCH with NO [UNKNOWN-CTE]. Decoding never grows data, and the parts walked
are bounded by the MIME tree's own limits (mime_tree.MAX_PARTS).

Content goes out as literal8 (~{n}) when it was decoded or binary (or holds
a NUL, which a plain literal may not carry), else as a plain literal.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from imapd.message.sections import resolve_part
from mailparse.decoding import decode_transfer
from mailparse.errors import UnknownTransferEncoding
from mailparse.mime_tree import Part, parse_message

_KNOWN: Final = frozenset({b"", b"7BIT", b"8BIT", b"BINARY", b"BASE64", b"QUOTED-PRINTABLE"})
_DECODED: Final = frozenset({b"BASE64", b"QUOTED-PRINTABLE"})
_BINARY: Final = frozenset({b"BINARY", b"BASE64", b"QUOTED-PRINTABLE"})
# The whole field, folded continuation lines included, without its final line break.
_CTE_FIELD: Final = re.compile(rb"(?im)^content-transfer-encoding[ \t]*:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*")
_BINARY_FIELD: Final = b"Content-Transfer-Encoding: binary"
_BASE64_FIELD: Final = b"Content-Transfer-Encoding: base64"
_BASE64_LINE: Final = 57  # input octets per 76-character base64 line (RFC 2045 6.8)


@dataclass(frozen=True, slots=True)
class BinaryContent:
    data: bytes
    binary: bool  # decoded or binary: send as literal8

    @property
    def needs_literal8(self) -> bool:
        return self.binary or b"\x00" in self.data


def part_content(root: Part, path: tuple[int, ...]) -> BinaryContent | None:
    """What BINARY[path] returns (path () = the whole message); None if there is no such part."""
    if not path:
        return _converted(root, root.start, root.end)
    part = resolve_part(root, path)
    if part is None:
        return None
    if part.message is not None:
        return _converted(part.message, part.body_start, part.end)
    if part.children:
        return _converted(part, part.body_start, part.end)
    encoding = _known(part)
    return BinaryContent(decode_transfer(part.body, encoding), encoding in _BINARY)


def _known(part: Part) -> bytes:
    encoding = part.encoding
    if encoding not in _KNOWN:
        raise UnknownTransferEncoding(encoding[:40].decode("ascii", "replace"))
    return encoding


def _leaves(part: Part) -> Iterator[Part]:
    if part.children:
        for child in part.children:
            yield from _leaves(child)
    elif part.message is not None:
        yield from _leaves(part.message)
    else:
        yield part


def _field_span(part: Part) -> tuple[int, int] | None:
    m = _CTE_FIELD.search(part.data, part.start, part.body_start)
    return (m.start(), m.end()) if m else None


def _converted(top: Part, lo: int, hi: int) -> BinaryContent:
    """data[lo:hi] with the base64/QP leaves below `top` decoded in place."""
    data = top.data
    edits: list[tuple[int, int, bytes]] = []
    binary = False
    for leaf in _leaves(top):
        encoding = _known(leaf)
        binary = binary or encoding in _BINARY
        if encoding not in _DECODED:
            continue
        span = _field_span(leaf)
        if span is not None and lo <= span[0]:
            edits.append((span[0], span[1], _BINARY_FIELD))
        edits.append((leaf.body_start, leaf.end, decode_transfer(leaf.body, encoding)))
    return BinaryContent(_apply(data, lo, hi, edits), binary)


def _apply(data: bytes, lo: int, hi: int, edits: list[tuple[int, int, bytes]]) -> bytes:
    if not edits:
        return data[lo:hi]
    out: list[bytes] = []
    pos = lo
    for start, end, replacement in sorted(edits):
        out.append(data[pos:start])
        out.append(replacement)
        pos = end
    out.append(data[pos:hi])
    return b"".join(out)


def encode_binary_parts(message: bytes) -> bytes:
    """An APPENDed message with binary content (literal8), made fit for BODY[] (no NULs in a
    literal): every leaf part with Content-Transfer-Encoding binary becomes base64 (as Dovecot
    does); BINARY[...] decodes it again."""
    root = parse_message(message)
    edits: list[tuple[int, int, bytes]] = []
    for leaf in _leaves(root):
        if leaf.encoding != b"BINARY":
            continue
        span = _field_span(leaf)
        if span is None:
            continue
        edits.append((span[0], span[1], _BASE64_FIELD))
        edits.append((leaf.body_start, leaf.end, _base64_lines(leaf.body)))
    return _apply(message, 0, len(message), edits)


def _base64_lines(data: bytes) -> bytes:
    return b"\r\n".join(
        binascii.b2a_base64(data[i : i + _BASE64_LINE], newline=False) for i in range(0, len(data), _BASE64_LINE)
    )
