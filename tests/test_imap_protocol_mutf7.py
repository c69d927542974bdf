"""Modified UTF-7 mailbox names: RFC 3501 examples, round trips, strictness."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imapd.protocol import mutf7
from imapd.protocol.errors import MUtf7Error

EXAMPLES = [
    ("~peter/mail/\u53f0\u5317/\u65e5\u672c\u8a9e", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ("INBOX", b"INBOX"),
    ("A&B", b"A&-B"),
    ("&", b"&-"),
    ("Entw\u00fcrfe", b"Entw&APw-rfe"),
    ("\u00e9t\u00e9", b"&AOkAdADp-"[:0] + b"&AOk-t&AOk-"),
    ("\U0001f600", b"&2D3eAA-"),
    ("", b""),
]


@pytest.mark.parametrize(("name", "wire"), EXAMPLES)
def test_examples(name: str, wire: bytes) -> None:
    assert mutf7.encode(name) == wire
    assert mutf7.decode(wire) == name


@given(st.text(max_size=40))
def test_round_trip(name: str) -> None:
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in name):
        return  # lone surrogates are not characters and cannot be encoded to UTF-16
    assert mutf7.decode(mutf7.encode(name)) == name


INVALID = [
    b"&Jjo",  # unterminated shift
    b"&U,BTFw-&ZeVnLIqe-",  # adjacent shifts must be one
    b"&AGE-",  # encodes "a", which must be written directly
    b"&U,BTF-",  # non-zero padding bits
    b"&U,B-",  # truncated
    b"&2D0-",  # half of a surrogate pair
    b"&*x-",  # not base64
    b"caf\xc3\xa9",  # raw 8-bit
    b"tab\there",  # control character
    b"&AOk=-",  # padding is not part of modified base64
]


@pytest.mark.parametrize("wire", INVALID)
def test_strict_decoding(wire: bytes) -> None:
    with pytest.raises(MUtf7Error):
        mutf7.decode(wire)


@given(st.binary(max_size=30))
def test_decode_never_raises_anything_else(wire: bytes) -> None:
    try:
        name = mutf7.decode(wire)
    except MUtf7Error:
        return
    assert mutf7.encode(name) == wire  # whatever decodes is canonical
