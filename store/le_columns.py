"""Columns of integers stored little-endian (the flag index, the UID lists per flag set, the
MailboxIndex API): one conversion to and from arrays of this machine."""

from __future__ import annotations

import array
import sys
from typing import Final

_SWAP: Final = sys.byteorder == "big"


def to_array(code: str, raw: bytes | memoryview) -> array.array[int]:
    a = array.array(code)
    a.frombytes(raw)
    if _SWAP:
        a.byteswap()
    return a


def to_bytes(a: array.array[int]) -> bytes:
    if _SWAP:
        a = array.array(a.typecode, a)
        a.byteswap()
    return a.tobytes()
