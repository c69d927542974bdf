"""lmtpd reads a plain header block itself and the email package reads the rest: the fields
and values the delivery rules see (spam header, Message-ID, Delivered-To) are the same."""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32

from hypothesis import given, settings
from hypothesis import strategies as st

from lmtpd.personal_rules import SpamHeader, _all_fields, _fields_named, _plain_fields, message_facts
from tests.header_blocks import header_blocks


def _email_fields(block: bytes) -> list[tuple[str, str]]:
    parsed = BytesHeaderParser(policy=compat32).parsebytes(block)
    return [(name.lower(), str(value)) for name, value in parsed.items()]


_BLOCKS = header_blocks(
    [b"X-Spam-Flag", b"x-spam-flag", b"Message-ID", b"Delivered-To", b"Subject", b"A", b"X:Y"],
    value_chars=" \tabcXYZ<>@.:;\r\n\x00\x7f\xe9",
    value_size=12,
    max_fields=5,
)


@settings(max_examples=3000, deadline=None)
@given(_BLOCKS)
def test_plain_blocks_read_as_the_email_package_reads_them(block: bytes) -> None:
    assert _all_fields(block) == _email_fields(block)
    plain = _plain_fields(block)
    if plain is not None:
        assert plain == _email_fields(block)


def test_the_usual_block_is_read_without_the_email_package() -> None:
    block = (
        b"Return-Path: <s@a.test>\r\nDelivered-To: bob@b.test\r\nFrom: A <a@a.test>\r\n"
        b"Subject: folded\r\n\tover two lines\r\nX-Spam-Flag:  YES \r\nMessage-ID:\r\n <1@a.test>\r\n"
    )
    assert _plain_fields(block) == _email_fields(block)
    facts = message_facts("s@A.Test.", block + b"\r\nbody\r\n", SpamHeader())
    assert facts.spam and facts.sender_domain == "a.test"
    assert facts.message_id == "<1@a.test>"
    assert facts.delivered_to == frozenset({"bob@b.test"})


def test_odd_blocks_go_to_the_email_package() -> None:
    assert _plain_fields(b"From: caf\xc3\xa9\r\n") is None  # not ASCII
    assert _plain_fields(b"From : a\r\n") is None  # a blank before the colon ends the email package's header
    assert _plain_fields(b"From: a\rb\r\n") is None  # a bare CR is a line end there
    assert _plain_fields(b"From: a") is None  # no line end: cut inside a line


# Spam header names as configured (lower-cased by message_facts), some of which no plain field can have.
_WANTED = st.sampled_from(["x-spam-flag", "message-id", "delivered-to", "subject", "a", "x:y", "x y", "", "caf\xe9"])


@settings(max_examples=3000, deadline=None)
@given(_BLOCKS, st.lists(_WANTED, min_size=1, max_size=3).map(tuple))
def test_the_wanted_fields_are_those_of_the_whole_reading(block: bytes, names: tuple[str, ...]) -> None:
    """message_facts reads only the fields it needs; they are the ones a reading of every field gives."""
    assert _fields_named(block, names) == [(name, value) for name, value in _all_fields(block) if name in names]


def test_the_wanted_fields_keep_their_order_and_case_insensitive_names() -> None:
    block = b"Delivered-To: a@x.test\r\nSubject: s\r\nMESSAGE-ID: <1@x>\r\nDelivered-to:\r\n\tb@x.test\r\n"
    assert _fields_named(block, ("delivered-to", "message-id")) == [
        ("delivered-to", "a@x.test"),
        ("message-id", "<1@x>"),
        ("delivered-to", "\r\n\tb@x.test"),
    ]
    facts = message_facts("", block + b"\r\n", SpamHeader())
    assert facts.delivered_to == frozenset({"a@x.test", "b@x.test"}) and facts.message_id == "<1@x>"
