"""The sans-IO LMTP core, byte for byte, without sockets."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmtpd import replies
from lmtpd.data_decoder import DataDecoder
from lmtpd.delivery import Outcome
from lmtpd.events import (
    NEED_DATA,
    BodyType,
    ConnectionClosed,
    Data,
    DataChunk,
    DataEnd,
    Event,
    Lhlo,
    MailFrom,
    NeedData,
    Noop,
    Quit,
    RcptTo,
    Rejected,
    Rset,
    Vrfy,
)
from lmtpd.protocol import LmtpConnection, LmtpProtocolError, State
from lmtpd.replies import for_outcome
from lmtpd.store_gateway import outcome_for


def state_of(conn: LmtpConnection) -> State:
    """The state, read through a call so mypy does not narrow it across sends."""
    return conn.state


def events(conn: LmtpConnection) -> list[Event | NeedData]:
    """Every event currently available, answering commands with a generic positive reply."""
    out: list[Event | NeedData] = []
    while True:
        ev = conn.next_event()
        out.append(ev)
        if ev is NEED_DATA or isinstance(ev, ConnectionClosed):
            return out
        if isinstance(ev, Rejected):
            conn.send(ev.reply)
        elif isinstance(ev, Data):
            conn.send(replies.GO_AHEAD)
        elif isinstance(ev, DataEnd):
            for _ in range(conn.recipients):
                conn.send(replies.delivered("x@y", 1))
        elif not isinstance(ev, DataChunk):
            conn.send(replies.OK_NOOP)


def transaction(conn: LmtpConnection) -> None:
    conn.receive_data(b"LHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\nDATA\r\n")
    evs = events(conn)
    assert [type(e) for e in evs] == [Lhlo, MailFrom, RcptTo, Data, NeedData]
    assert state_of(conn) is State.DATA


def test_pipelined_transaction_events_and_state() -> None:
    conn = LmtpConnection(max_message_size=1000)
    conn.receive_data(b"LHLO client.example\r\nMAIL FROM:<a@b.example> SIZE=12 BODY=8BITMIME\r\n")
    assert conn.next_event() == Lhlo("client.example")
    assert conn.send(replies.lhlo_ok("mx", 1000)) == (
        b"250-mx\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE 1000\r\n"
    )
    assert state_of(conn) is State.READY
    assert conn.next_event() == MailFrom("a@b.example", 12, BodyType.EIGHT_BIT_MIME)
    assert conn.send(replies.OK_MAIL) == b"250 2.1.0 Sender ok\r\n"
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"RCPT TO:<u1@d.example>\r\nRCPT TO:<nobody@d.example>\r\nRCPT TO:<u2@d.example>\r\nDATA\r\n")
    assert conn.next_event() == RcptTo("u1@d.example")
    conn.send(replies.OK_RCPT)
    assert conn.next_event() == RcptTo("nobody@d.example")
    assert conn.send(replies.no_such_user("nobody@d.example")) == b"550 5.1.1 <nobody@d.example>: no such user\r\n"
    assert conn.next_event() == RcptTo("u2@d.example")
    conn.send(replies.OK_RCPT)
    assert conn.recipients == 2
    assert conn.next_event() == Data()
    assert conn.send(replies.GO_AHEAD).startswith(b"354 ")
    conn.receive_data(b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n")
    assert conn.next_event() == DataChunk(b"Subject: x\r\n\r\nhello\r\n")
    assert conn.next_event() == DataEnd(size=21, too_big=False)
    assert state_of(conn) is State.REPLYING
    with pytest.raises(LmtpProtocolError):
        conn.next_event()  # replies are owed first
    conn.send(replies.delivered("u1@d.example", 1))
    assert state_of(conn) is State.REPLYING
    conn.send(replies.delivered("u2@d.example", 2))
    assert state_of(conn) is State.READY
    assert conn.recipients == 0
    assert conn.next_event() == Quit()
    assert conn.send(replies.BYE) == b"221 2.0.0 Bye\r\n"
    assert state_of(conn) is State.CLOSED


def test_commands_out_of_sequence_get_503() -> None:
    conn = LmtpConnection(max_message_size=1000)
    conn.receive_data(b"MAIL FROM:<a@b>\r\n")
    ev = conn.next_event()
    assert ev == Rejected(replies.NEED_LHLO)
    conn.send(replies.NEED_LHLO)
    conn.receive_data(b"LHLO x\r\nDATA\r\nRCPT TO:<u@d>\r\nMAIL FROM:<>\r\nDATA\r\nMAIL FROM:<c@d>\r\n")
    assert isinstance(conn.next_event(), Lhlo)
    conn.send(replies.OK_NOOP)
    assert conn.next_event() == Rejected(replies.BAD_SEQUENCE)  # DATA before MAIL
    conn.send(replies.BAD_SEQUENCE)
    assert conn.next_event() == Rejected(replies.BAD_SEQUENCE)  # RCPT before MAIL
    conn.send(replies.BAD_SEQUENCE)
    assert conn.next_event() == MailFrom("")  # null sender
    conn.send(replies.OK_MAIL)
    assert conn.next_event() == Rejected(replies.NO_VALID_RECIPIENTS)  # DATA with no recipient
    conn.send(replies.NO_VALID_RECIPIENTS)
    assert conn.next_event() == Rejected(replies.NESTED_MAIL)
    conn.send(replies.NESTED_MAIL)
    assert state_of(conn) is State.MAIL


def test_refused_recipients_leave_no_transaction_to_send() -> None:
    conn = LmtpConnection(max_message_size=1000)
    conn.receive_data(b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<nobody@d>\r\nDATA\r\n")
    for _ in range(2):
        conn.next_event()
        conn.send(replies.OK_NOOP)
    assert conn.next_event() == RcptTo("nobody@d")
    conn.send(replies.no_such_user("nobody@d"))
    assert conn.next_event() == Rejected(replies.NO_VALID_RECIPIENTS)


def test_rset_noop_vrfy_and_old_greetings() -> None:
    conn = LmtpConnection(max_message_size=1000)
    conn.receive_data(b"EHLO x\r\nHELO x\r\nNOOP hi\r\nVRFY bob\r\nLHLO x\r\nMAIL FROM:<a@b>\r\nRSET\r\nRSET now\r\n")
    assert conn.next_event() == Rejected(replies.USE_LHLO)
    conn.send(replies.USE_LHLO)
    assert conn.next_event() == Rejected(replies.USE_LHLO)
    conn.send(replies.USE_LHLO)
    assert conn.next_event() == Noop()
    conn.send(replies.OK_NOOP)
    assert conn.next_event() == Vrfy("bob")
    assert conn.send(replies.VRFY_CANNOT).startswith(b"252 2.5.0 ")
    assert conn.next_event() == Lhlo("x")
    conn.send(replies.OK_NOOP)
    assert isinstance(conn.next_event(), MailFrom)
    conn.send(replies.OK_MAIL)
    assert state_of(conn) is State.MAIL
    assert conn.next_event() == Rset()
    conn.send(replies.OK_RSET)
    assert state_of(conn) is State.READY
    ev = conn.next_event()
    assert isinstance(ev, Rejected)
    assert ev.reply.code == 501


@pytest.mark.parametrize(
    ("line", "code", "enhanced"),
    [
        (b"MAIL FROM:<a@b> SIZE=abc", 501, "5.5.4"),
        (b"MAIL FROM:<a@b> SMTPUTF8", 555, "5.5.4"),
        (b"MAIL FROM:<a@b> BODY=BINARYMIME", 501, "5.5.4"),
        (b"MAIL FROM:a@b", 501, "5.5.4"),
        (b"MAIL TO:<a@b>", 501, "5.5.4"),
        (b"MAIL FROM:<a@b", 501, "5.5.4"),
        (b"BDAT 10", 502, "5.5.1"),
        (b"XYZZY", 500, "5.5.2"),
        (b"  ", 500, "5.5.2"),
        (b"MAIL FROM:<\xff@b>", 501, "5.5.4"),
        (b"MAIL FROM:<a\rX-Injected: 1@b>", 501, "5.5.4"),
        (b'MAIL FROM:<"a\rb"@c>', 501, "5.5.4"),
        (b"MAIL FROM:<a\x7fb@c>", 501, "5.5.4"),
        (b"MAIL FROM:<a\x00b@c>", 501, "5.5.4"),
        (b"MAIL FROM:<a\tb@c>", 501, "5.5.4"),
    ],
)
def test_bad_mail_commands(line: bytes, code: int, enhanced: str) -> None:
    conn = LmtpConnection(max_message_size=1000)
    conn.receive_data(b"LHLO x\r\n" + line + b"\r\n")
    conn.next_event()
    conn.send(replies.OK_NOOP)
    ev = conn.next_event()
    assert isinstance(ev, Rejected)
    assert (ev.reply.code, ev.reply.enhanced) == (code, enhanced)
    conn.send(ev.reply)
    assert state_of(conn) is State.READY


def test_paths_source_routes_quotes_and_case() -> None:
    conn = LmtpConnection(max_message_size=1000)
    conn.receive_data(b'lhlo x\r\nmail from:<@relay.example:a@b.example>\r\nrcpt to: <"odd>name"@d.example>\r\n')
    assert conn.next_event() == Lhlo("x")
    conn.send(replies.OK_NOOP)
    assert conn.next_event() == MailFrom("a@b.example")
    conn.send(replies.OK_MAIL)
    assert conn.next_event() == RcptTo('"odd>name"@d.example')


def test_overlong_command_line_is_refused_and_session_continues() -> None:
    conn = LmtpConnection(max_message_size=1000, max_line=100)
    conn.receive_data(b"LHLO " + b"x" * 300)
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"y" * 300)
    assert conn.next_event() is NEED_DATA
    assert conn.buffered_bytes <= 100  # bounded memory while discarding
    conn.receive_data(b"z\r\nNOOP\r\n")
    assert conn.next_event() == Rejected(replies.LINE_TOO_LONG)
    assert conn.send(replies.LINE_TOO_LONG) == b"500 5.5.2 Line too long\r\n"
    assert conn.next_event() == Noop()


def test_dot_unstuffing_and_bare_lf_in_data() -> None:
    conn = LmtpConnection(max_message_size=1000)
    transaction(conn)
    conn.receive_data(b"A: b\n\n..leading dot\r\n.\r\nbare\nmixed\r\n..\n.\n")
    body = b""
    while True:
        ev = conn.next_event()
        if isinstance(ev, DataEnd):
            break
        assert isinstance(ev, DataChunk)
        body += ev.data
    assert body == b"A: b\r\n\r\n.leading dot\r\n"
    assert ev == DataEnd(len(body), False)
    conn.send(replies.delivered("u@d.example", 1))
    # What followed the first dot line are commands again.
    assert conn.next_event() == Rejected(replies.UNKNOWN_COMMAND)  # "bare"


def test_data_split_at_every_byte() -> None:
    wire = b"Subject: s\r\n\r\n..x\r\nline\r\n\r\n.\r\n"
    conn = LmtpConnection(max_message_size=1000)
    transaction(conn)
    body = b""
    ends: list[DataEnd] = []
    for i in range(len(wire)):
        conn.receive_data(wire[i : i + 1])
        for ev in events(conn):
            if isinstance(ev, DataChunk):
                body += ev.data
            elif isinstance(ev, DataEnd):
                ends.append(ev)
    assert body == b"Subject: s\r\n\r\n.x\r\nline\r\n\r\n"
    assert ends == [DataEnd(len(body), False)]
    assert state_of(conn) is State.READY


def test_too_big_content_is_read_to_the_dot_and_flagged() -> None:
    conn = LmtpConnection(max_message_size=100)
    transaction(conn)
    stored = 0
    conn.receive_data(b"x" * 60 + b"\r\n")
    conn.receive_data(b"y" * 60 + b"\r\n.\r\nNOOP\r\n")
    while True:
        ev = conn.next_event()
        if isinstance(ev, DataEnd):
            break
        assert isinstance(ev, DataChunk)
        stored += len(ev.data)
    assert ev == DataEnd(124, True)
    assert stored <= 100
    conn.send(replies.too_big(100))
    assert conn.next_event() == Noop()


def test_eof_mid_data_and_mid_command() -> None:
    conn = LmtpConnection(max_message_size=1000)
    transaction(conn)
    conn.receive_data(b"partial\r\n")
    assert isinstance(conn.next_event(), DataChunk)
    conn.receive_data(b"")
    assert isinstance(conn.next_event(), ConnectionClosed)
    conn2 = LmtpConnection(max_message_size=1000)
    conn2.receive_data(b"LHL")
    conn2.receive_data(b"")
    assert isinstance(conn2.next_event(), ConnectionClosed)


def test_send_without_pending_command_is_a_caller_bug() -> None:
    conn = LmtpConnection(max_message_size=1000)
    with pytest.raises(LmtpProtocolError):
        conn.send(replies.OK_NOOP)


def test_overlong_content_line_streams_in_pieces() -> None:
    dec = DataDecoder(max_pending=1000)
    out = dec.feed(b"." + b"a" * 5000)
    assert out.rest is None
    assert out.content == b"a" * 5000  # leading dot removed, bytes passed on without waiting for LF
    out2 = dec.feed(b"b\r")  # CR held back: it may be half a CRLF
    assert out2.content == b""
    out3 = dec.feed(b"\n.\r\n")
    assert (out2.content + out3.content, out3.rest) == (b"b\r\n", b"")


def stuff(message: bytes) -> bytes:
    """What an SMTP client sends for a message with CRLF or LF line ends."""
    lines = message.split(b"\n")
    return b"\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines)


_line = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))


@settings(deadline=None, max_examples=200)  # no per-example deadline: CI machines are shared and slow
@given(
    lines=st.lists(st.tuples(_line, st.sampled_from([b"\r\n", b"\n"]), st.booleans()), max_size=30),
    cuts=st.lists(st.integers(min_value=1, max_value=50), max_size=40),
    max_pending=st.integers(min_value=4, max_value=64),
)
def test_decoder_roundtrip_any_chunking(
    lines: list[tuple[bytes, bytes, bool]], cuts: list[int], max_pending: int
) -> None:
    if lines:  # the last line ends with CRLF: only <CRLF>.<CRLF> ends DATA (RFC 5321 2.3.8)
        lines[-1] = (lines[-1][0], b"\r\n", lines[-1][2])
    message = b"".join((b"." + text if dot else text) + end for text, end, dot in lines)
    expected = b"".join((b"." + text if dot else text) + b"\r\n" for text, _, dot in lines)
    wire = stuff(message) + b".\r\nNEXT"
    dec = DataDecoder(max_pending=max_pending)
    got = b""
    rest: bytes | None = None
    pos = 0
    for n in [*cuts, len(wire)]:
        piece = wire[pos : pos + n]
        pos += n
        out = dec.feed(piece)
        got += out.content
        if out.rest is not None:
            rest = out.rest + wire[pos:]
            break
    assert got == expected
    assert rest == b"NEXT"


def test_full_store_disk_is_a_temporary_failure_never_a_bounce() -> None:

    outcome = outcome_for(grpc.StatusCode.RESOURCE_EXHAUSTED, "storage: the mail store's disk is full")
    assert outcome is Outcome.STORAGE_FULL
    reply = for_outcome(outcome, "bob@example.test", uid=0, quota_tempfail=False)
    assert (reply.code, reply.enhanced) == (452, "4.3.1")
    assert reply.transient
    quota = outcome_for(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota: bob would exceed 10 bytes")
    assert quota is Outcome.OVER_QUOTA


def test_an_internal_store_failure_is_temporary_not_a_bounce() -> None:

    outcome = outcome_for(grpc.StatusCode.INTERNAL, "write transaction failed: mdb_txn_commit: Input/output error")
    assert outcome is Outcome.FAILED
    reply = for_outcome(outcome, "bob@example.test", uid=0, quota_tempfail=False)
    assert (reply.code, reply.enhanced) == (451, "4.3.0")
