"""Modified UTF-7 mailbox names (RFC 3501 section 5.1.3).

Printable US-ASCII stands for itself except "&", which is written "&-";
everything else is UTF-16BE in base64 with "," for "/" between "&" and "-".
Decoding is strict: a name that a conforming client could not have produced
(raw 8-bit bytes, unterminated or empty shifts, encoded printable ASCII,
adjacent shifts, bad padding, broken surrogates) raises `MUtf7Error`, so the
same mailbox can never be spelled two ways.
"""

from __future__ import annotations

import binascii
from typing import Final

from imapd.protocol.errors import MUtf7Error

_B64_STD: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_IMAP: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"
_B64_ALPHABET: Final = frozenset(_B64_IMAP)
_TO_STD: Final = bytes.maketrans(b",", b"/")
_TO_IMAP: Final = bytes.maketrans(b"/", b",")
_PRINTABLE: Final = frozenset(range(0x20, 0x7F))


def encode(name: str) -> bytes:
    """A mailbox name as it goes on the wire."""
    if name.isascii() and name.isprintable() and "&" not in name:
        return name.encode("ascii")  # the common case, no shifting at all
    out = bytearray()
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            b64 = binascii.b2a_base64(raw, newline=False).rstrip(b"=").translate(_TO_IMAP)
            out.extend(b"&" + b64 + b"-")
            pending.clear()

    for ch in name:
        code = ord(ch)
        if 0x20 <= code < 0x7F:
            flush()
            out.extend(b"&-" if ch == "&" else ch.encode("ascii"))
        else:
            pending.append(ch)
    flush()
    return bytes(out)


class UndecodableName(str):
    """A mailbox name on the wire that is not canonical modified UTF-7 (kept as its ASCII text).

    No mailbox has such a name: commands naming it answer NO, LIST patterns match nothing
    (as Dovecot does), rather than BAD for the whole command."""

    __slots__ = ()


def decode(raw: bytes) -> str:
    """The mailbox name for wire bytes `raw`; raises MUtf7Error when not canonical mUTF-7."""
    if b"&" not in raw:
        if all(b in _PRINTABLE for b in raw):
            return raw.decode("ascii")
        raise MUtf7Error("mailbox name has bytes outside printable US-ASCII")
    out: list[str] = []
    i = 0
    n = len(raw)
    last_shift_end = -1
    while i < n:
        amp = raw.find(b"&", i)
        plain = raw[i:] if amp < 0 else raw[i:amp]
        if not all(b in _PRINTABLE for b in plain):
            raise MUtf7Error("mailbox name has bytes outside printable US-ASCII")
        out.append(plain.decode("ascii"))
        if amp < 0:
            break
        dash = raw.find(b"-", amp + 1)
        if dash < 0:
            raise MUtf7Error("unterminated &-shift in mailbox name")
        if dash == amp + 1:
            out.append("&")
            i = dash + 1
            continue
        if amp == last_shift_end:
            raise MUtf7Error("adjacent &-shifts must be merged")
        out.append(_decode_shift(raw[amp + 1 : dash]))
        last_shift_end = dash + 1
        i = dash + 1
    return "".join(out)


def _decode_shift(b64: bytes) -> str:
    if not all(b in _B64_ALPHABET for b in b64):
        raise MUtf7Error("invalid modified base64 in mailbox name")
    if len(b64) % 4 == 1:
        raise MUtf7Error("truncated modified base64 in mailbox name")
    padded = b64.translate(_TO_STD) + b"=" * (-len(b64) % 4)
    try:
        data = binascii.a2b_base64(padded, strict_mode=True)
    except binascii.Error:
        raise MUtf7Error("invalid modified base64 in mailbox name") from None
    if len(data) % 2:
        raise MUtf7Error("odd number of UTF-16 bytes in mailbox name")
    # Canonical form: re-encoding must give the same characters (no leftover bits).
    if binascii.b2a_base64(data, newline=False).rstrip(b"=") != padded.rstrip(b"="):
        raise MUtf7Error("non-zero padding bits in modified base64")
    try:
        text = data.decode("utf-16-be")
    except UnicodeDecodeError:
        raise MUtf7Error("broken UTF-16 surrogates in mailbox name") from None
    if any(0x20 <= ord(ch) < 0x7F for ch in text):
        raise MUtf7Error("printable US-ASCII must not be base64-encoded")
    return text
