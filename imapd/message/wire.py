"""Direct wire encoding for the hot path (ENVELOPE of many messages per FETCH).

Same rules as imapd.protocol.values.encode for String/NIL, but done with a
C-level `translate` check instead of a per-byte Python loop; the result is
wrapped in values.Raw. Tests compare both encodings.
"""

from __future__ import annotations

from typing import Final

_QUOTED_SAFE: Final = bytes(sorted(set(range(0x20, 0x7F)) - {ord('"'), ord("\\")}))
_MAX_QUOTED: Final = 1024


def string(value: bytes) -> bytes:
    """A string: quoted when short and safe, otherwise a literal (as values.String)."""
    if len(value) <= _MAX_QUOTED and not value.translate(None, _QUOTED_SAFE):
        return b'"' + value + b'"'
    return b"{%d}\r\n" % len(value) + value


def nstring(value: bytes | None) -> bytes:
    return b"NIL" if value is None else string(value)
