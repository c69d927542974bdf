"""Content decoding for SEARCH and BINARY: transfer encodings, charsets, RFC 2047 words.

Everything is lenient: truncated base64 decodes as far as it goes, unknown
charsets fall back to UTF-8 with replacement, nothing raises.
"""

from __future__ import annotations

import binascii
import codecs
import re
from typing import Final

_B64_JUNK: Final = re.compile(rb"[^A-Za-z0-9+/]")
_ENCODED_WORD: Final = re.compile(rb"=\?([^?\s]{1,75})\?([bBqQ])\?([^?\s]*)\?=")
_MAX_WORDS: Final = 1000  # encoded words decoded per value; more is abuse and stays raw
_BETWEEN_WORDS: Final = re.compile(rb"(=\?[^?\s]{1,75}\?[bBqQ]\?[^?\s]*\?=)[ \t\r\n]+(?==\?)")


def decode_base64(data: bytes) -> bytes:
    """Base64 ignoring junk and padding; a truncated last group decodes what it can."""
    clean = _B64_JUNK.sub(b"", data)
    rest = len(clean) % 4
    if rest == 1:
        clean = clean[:-1]
    elif rest:
        clean += b"=" * (4 - rest)
    try:
        return binascii.a2b_base64(clean)
    except (binascii.Error, ValueError):
        return b""


def decode_transfer(body: bytes, encoding: bytes) -> bytes:
    """Undo Content-Transfer-Encoding (upper-cased name); unknown encodings pass through."""
    if encoding == b"BASE64":
        return decode_base64(body)
    if encoding == b"QUOTED-PRINTABLE":
        try:
            return binascii.a2b_qp(body)
        except (binascii.Error, ValueError):
            return body
    return body


def _codec(charset: bytes | None) -> str:
    if charset:
        name = charset.decode("ascii", "replace").strip().strip('"')
        try:
            return codecs.lookup(name).name
        except (LookupError, ValueError):
            pass
    return "utf-8"


def decode_charset(data: bytes, charset: bytes | None) -> str:
    """Bytes in `charset` (unknown or missing: UTF-8) to text, replacing what does not decode."""
    codec = _codec(charset)
    if codec == "ascii":
        codec = "utf-8"  # 8-bit junk labelled us-ascii is usually UTF-8
    try:
        return data.decode(codec, "replace")
    except (LookupError, ValueError, TypeError):
        return data.decode("utf-8", "replace")


def _decode_word(match: re.Match[bytes]) -> bytes:
    charset, kind, text = match.group(1), match.group(2).upper(), match.group(3)
    charset = charset.split(b"*", 1)[0]  # RFC 2231 language suffix
    if kind == b"B":
        raw = decode_base64(text)
    else:
        try:
            raw = binascii.a2b_qp(text.replace(b"_", b" "))
        except (binascii.Error, ValueError):
            raw = text
    # Re-encoded as UTF-8 so the whole value decodes in one go below.
    return decode_charset(raw, charset).encode("utf-8", "surrogatepass")


def decode_header_value(value: bytes) -> str:
    """An unfolded header value with RFC 2047 words decoded (blanks between adjacent words dropped)."""
    if b"=?" in value:
        value = _ENCODED_WORD.sub(_decode_word, _BETWEEN_WORDS.sub(rb"\1", value), count=_MAX_WORDS)
    return value.decode("utf-8", "replace")
