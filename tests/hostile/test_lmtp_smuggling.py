"""Issue 9.2: LMTP ended DATA at <LF>.<CRLF>, so a body could smuggle a second
transaction with a forged sender ("SMTP smuggling"). Only <CRLF>.<CRLF> ends
DATA now; a dot line next to a bare LF or CR is content."""

from __future__ import annotations

import pytest
import trio

from lmtpd.data_decoder import DataDecoder
from lmtpd.memory_drop import MemoryMailDrop
from tests.test_lmtp_server import OPTS, read_replies, run_session

SMUGGLING_BODY = (
    b"Subject: hello\r\n\r\nhi\n.\r\nMAIL FROM:<ceo@bank.example>\r\nRCPT TO:<demo@mailha.test>\r\n"
    b"DATA\r\nSubject: SMUGGLED\r\n\r\nsend money\r\n.\r\n"
)


@pytest.mark.parametrize(
    "fake_end",
    [b"\n.\r\n", b"\r\n.\n", b"\n.\n", b"\r.\r\n", b"\r\n.\r", b"\r.\r"],
    ids=["LF.CRLF", "CRLF.LF", "LF.LF", "CR.CRLF", "CRLF.CR", "CR.CR"],
)
def test_only_crlf_dot_crlf_ends_data(fake_end: bytes) -> None:
    dec = DataDecoder()
    out = dec.feed(b"one" + fake_end + b"MAIL FROM:<x@y.example>\r\n")
    assert out.rest is None, "a bare LF or CR made a dot line end the content"
    out = dec.feed(b"tail\r\n.\r\nQUIT\r\n")
    assert out.rest == b"QUIT\r\n"


def test_dot_split_across_reads_after_bare_lf_is_not_an_end() -> None:
    dec = DataDecoder()
    assert dec.feed(b"x\n").rest is None
    assert dec.feed(b".\r\n").rest is None
    assert dec.feed(b"\r\n.\r\n").rest == b""


def test_the_issue_smuggling_body_stores_one_message_and_no_forged_sender() -> None:
    drop = MemoryMailDrop(max_message_size=20_000)
    drop.add_user("demo", "demo@mailha.test")

    async def script(c: trio.abc.Stream) -> None:
        await read_replies(c, 1)
        await c.send_all(b"LHLO mx.test\r\nMAIL FROM:<friend@example.org>\r\nRCPT TO:<demo@mailha.test>\r\nDATA\r\n")
        await read_replies(c, 4)
        await c.send_all(SMUGGLING_BODY + b"QUIT\r\n")
        delivered, bye = await read_replies(c, 2)
        assert delivered.startswith(b"250 2.0.0 <demo@mailha.test>")
        assert bye.startswith(b"221 ")

    run_session(drop, script, OPTS)
    messages = drop.inboxes["demo"].messages
    assert len(messages) == 1
    assert messages[0].startswith(b"Return-Path: <friend@example.org>\r\n")
    assert b"Return-Path: <ceo@bank.example>" not in messages[0]
    assert messages[0].endswith(b"send money\r\n")
