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
    try:
        # Non-strict a2b_base64 already skips line breaks and junk: one C pass for sane input.
        return binascii.a2b_base64(data)
    except (binascii.Error, ValueError):
        pass
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
    """The Python codec for a charset label; "ascii" for unknown or missing ones."""
    if charset:
        name = charset.decode("ascii", "replace").strip().strip('"')
        try:
            return codecs.lookup(name).name
        except (LookupError, ValueError):
            pass
    return "ascii"


def unlabelled_text(data: bytes) -> str:
    """8-bit text without a (usable) charset: UTF-8 when it is valid UTF-8, else Latin-1 (never fails)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def decode_charset(data: bytes, charset: bytes | None) -> str:
    """Bytes in `charset` to text, replacing what does not decode; unknown or missing: see unlabelled_text."""
    codec = _codec(charset)
    if codec in ("utf-8", "ascii"):
        # Unknown, missing, or us-ascii (often mislabelled 8-bit) take the guessing path.
        if codec == "utf-8" and charset:
            return data.decode("utf-8", "replace")
        return unlabelled_text(data)
    try:
        return data.decode(codec, "replace")
    except (LookupError, ValueError, TypeError):
        return unlabelled_text(data)


def _decode_word(match: re.Match[bytes]) -> str:
    charset, kind, text = match.group(1), match.group(2).upper(), match.group(3)
    charset = charset.split(b"*", 1)[0]  # RFC 2231 language suffix
    if kind == b"B":
        raw = decode_base64(text)
    else:
        try:
            raw = binascii.a2b_qp(text.replace(b"_", b" "))
        except (binascii.Error, ValueError):
            raw = text
    return decode_charset(raw, charset)


def decode_header_value(value: bytes) -> str:
    """A header value with RFC 2047 words decoded (blanks between adjacent words dropped).

    Text outside encoded words is raw 8-bit: read as UTF-8 when valid, else Latin-1.
    """
    if b"=?" not in value:
        return unlabelled_text(value)
    value = _BETWEEN_WORDS.sub(rb"\1", value)
    pieces: list[str] = []
    pos = 0
    for count, match in enumerate(_ENCODED_WORD.finditer(value)):
        if count >= _MAX_WORDS:
            break
        pieces.append(unlabelled_text(value[pos : match.start()]))
        pieces.append(_decode_word(match))
        pos = match.end()
    pieces.append(unlabelled_text(value[pos:]))
    return "".join(pieces)
