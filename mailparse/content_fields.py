"""MIME header values: Content-Type and Content-Disposition with parameters.

Parameters are returned as written (RFC 2231 "name*0*=" continuations are
passed through like any parameter, as many IMAP servers do); names are
upper-cased for BODYSTRUCTURE, values keep their bytes. Junk never raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

_TSPECIALS: Final = frozenset(b'()<>@,;:\\"/[]?= \t\r\n')
_MAX_PARAMS: Final = 64
_MAX_VALUE: Final = 16 * 1024  # longer Content-Type/Disposition values are abuse; the rest is ignored


@dataclass(frozen=True, slots=True)
class TypedValue:
    """A "token/token; a=b" or "token; a=b" value."""

    main: bytes  # upper-cased type, or disposition; b"" when missing
    sub: bytes  # upper-cased subtype; b"" when missing
    params: tuple[tuple[bytes, bytes], ...]

    def param(self, name: bytes) -> bytes | None:
        for key, value in self.params:
            if key == name:
                return value
        return None


def _skip_blank_and_comments(value: bytes, i: int) -> int:
    n = len(value)
    while i < n:
        c = value[i]
        if c in b" \t\r\n":
            i += 1
        elif c == 0x28:
            depth = 0
            while i < n:
                if value[i] == 0x5C:
                    i += 1
                elif value[i] == 0x28:
                    depth += 1
                elif value[i] == 0x29:
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
        else:
            break
    return i


def _token(value: bytes, i: int) -> tuple[bytes, int]:
    j = i
    while j < len(value) and value[j] not in _TSPECIALS:
        j += 1
    return value[i:j], j


def _quoted(value: bytes, i: int) -> tuple[bytes, int]:
    """Value of the quoted string starting at value[i] == '"'; unterminated runs to the end."""
    buf = bytearray()
    i += 1
    n = len(value)
    while i < n and value[i] != 0x22:
        if value[i] == 0x5C and i + 1 < n:
            i += 1
        buf.append(value[i])
        i += 1
    return bytes(buf), i + 1


def parse_typed(value: bytes, with_subtype: bool) -> TypedValue:
    value = value[:_MAX_VALUE]
    i = _skip_blank_and_comments(value, 0)
    main, i = _token(value, i)
    sub = b""
    if with_subtype:
        i = _skip_blank_and_comments(value, i)
        if i < len(value) and value[i] == 0x2F:
            i = _skip_blank_and_comments(value, i + 1)
            sub, i = _token(value, i)
    params: list[tuple[bytes, bytes]] = []
    n = len(value)
    while i < n and len(params) < _MAX_PARAMS:
        semi = value.find(b";", i)
        if semi < 0:
            break
        i = _skip_blank_and_comments(value, semi + 1)
        name, i = _token(value, i)
        i = _skip_blank_and_comments(value, i)
        if not name or i >= n or value[i] != 0x3D:
            continue
        i = _skip_blank_and_comments(value, i + 1)
        if i < n and value[i] == 0x22:
            pvalue, i = _quoted(value, i)
        else:
            # Be lenient with unquoted values holding tspecials (common in the wild): up to ";".
            end = value.find(b";", i)
            end = n if end < 0 else end
            pvalue = value[i:end].strip(b" \t\r\n")
            i = end
        params.append((name.upper(), pvalue))
    return TypedValue(main.upper(), sub.upper(), tuple(params))
