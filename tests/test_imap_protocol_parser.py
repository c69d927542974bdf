"""Framing: literals, continuation, APPEND streaming, limits, resync, IDLE and AUTHENTICATE."""

from __future__ import annotations

import datetime

import pytest

from imapd.protocol import commands as c
from imapd.protocol import events as ev
from imapd.protocol import fetch_spec as fs
from imapd.protocol.errors import UsageError
from imapd.protocol.parser import CommandParser, ParserLimits
from imapd.protocol.sequence import SequenceSet
from tests.imap_protocol_support import drain, feed, feed_bytewise, merge_chunks

PIPELINE = (
    b"a1 LOGIN {3}\r\nbob {6+}\r\nsecret\r\n"
    b"a2 SELECT INBOX\r\n"
    b"a3 APPEND INBOX (\\Seen) {12}\r\nHello\r\nWorld (\\Draft) {2+}\r\nhi\r\n"
    b"a4 UID FETCH 1:50 (FLAGS ENVELOPE)\r\n"
    b"junk line\r\n"
    b"a5 FROB {4+}\r\nab\r\n\r\n"
    b"a6 NOOP\r\n"
)


def expected_good() -> list[ev.Event]:
    return [
        ev.ContinuationNeeded("a1", 3),
        ev.CommandReceived("a1", c.Login("bob", "secret")),
        ev.CommandReceived("a2", c.Select("INBOX")),
        ev.AppendStart("a3", "INBOX"),
        ev.AppendMessageStart("a3", ("\\Seen",), None, 12),
        ev.ContinuationNeeded("a3", 12),
        ev.AppendChunk("a3", b"Hello\r\nWorld"),
        ev.AppendMessageEnd("a3"),
        ev.AppendMessageStart("a3", ("\\Draft",), None, 2),
        ev.AppendChunk("a3", b"hi"),
        ev.AppendMessageEnd("a3"),
        ev.AppendEnd("a3"),
        ev.CommandReceived("a4", c.Fetch(SequenceSet.parse(b"1:50"), (fs.FLAGS, fs.ENVELOPE), uid=True)),
        ev.BadCommand("junk", "unknown command", ev.BadReason.UNKNOWN_COMMAND),
        ev.BadCommand("a5", "unknown command", ev.BadReason.UNKNOWN_COMMAND),
        ev.CommandReceived("a6", c.Noop()),
    ]


def test_junk_after_append_message_is_bad() -> None:
    parser = CommandParser(authenticated=True)
    # "Hello\r\nWorld" is 12 bytes: with {11} the "d" is left over where a space must follow the literal
    events = merge_chunks(feed(parser, PIPELINE.replace(b"{12}", b"{11}")))
    assert events[:5] == [*expected_good()[:4], ev.AppendMessageStart("a3", ("\\Seen",), None, 11)]
    assert events[6:9] == [
        ev.AppendChunk("a3", b"Hello\r\nWorl"),
        ev.AppendMessageEnd("a3"),
        ev.BadCommand("a3", "expected a space"),
    ]
    # the rest of the line (and its {2+} literal) was skipped; the next commands parse
    assert events[9] == expected_good()[12]


def test_good_pipeline_whole_and_bytewise() -> None:
    assert merge_chunks(feed(CommandParser(authenticated=True), PIPELINE)) == expected_good()
    assert merge_chunks(feed_bytewise(CommandParser(authenticated=True), PIPELINE)) == expected_good()


def test_split_at_every_byte_boundary() -> None:
    expected = expected_good()
    for cut in range(len(PIPELINE) + 1):
        parser = CommandParser(authenticated=True)
        events = feed(parser, PIPELINE[:cut]) + feed(parser, PIPELINE[cut:])
        assert merge_chunks(events) == expected, cut
        assert parser.buffered == 0


def test_lf_only_line_endings_are_accepted() -> None:
    events = feed(CommandParser(), b"a1 NOOP\na2 LOGIN {1+}\nx y\n")
    assert events == [ev.CommandReceived("a1", c.Noop()), ev.CommandReceived("a2", c.Login("x", "y"))]


def test_sync_literal_blocks_until_accepted() -> None:
    parser = CommandParser()
    parser.receive_data(b"a1 LOGIN {3}\r\n")
    assert parser.next_event() == ev.ContinuationNeeded("a1", 3)
    assert parser.awaiting_continuation
    with pytest.raises(UsageError):
        parser.next_event()
    parser.accept_literal()
    assert parser.next_event() is ev.NEED_DATA


def test_rejected_literal_drops_the_command() -> None:
    parser = CommandParser()
    parser.receive_data(b"a1 LOGIN {3}\r\n")
    assert parser.next_event() == ev.ContinuationNeeded("a1", 3)
    parser.reject_literal()
    # the client saw our tagged NO and moved on to the next command
    assert feed(parser, b"a2 NOOP\r\n") == [ev.CommandReceived("a2", c.Noop())]


def test_usage_errors() -> None:
    parser = CommandParser()
    with pytest.raises(UsageError):
        parser.accept_literal()
    with pytest.raises(UsageError):
        parser.reject_literal()
    with pytest.raises(UsageError):
        parser.discard_command()
    parser.receive_data(b"a1 LOGIN {3}\r\n")
    parser.next_event()
    with pytest.raises(UsageError):
        parser.begin_idle("a0")


# --- limits ------------------------------------------------------------------


def test_line_limit_before_and_after_authentication() -> None:
    parser = CommandParser()
    long_line = b"a1 LOGIN " + b"x" * 8200 + b" y\r\n"
    events = feed(parser, long_line + b"a2 NOOP\r\n")
    assert events == [
        ev.BadCommand("a1", "command line too long", ev.BadReason.LINE_TOO_LONG),
        ev.CommandReceived("a2", c.Noop()),
    ]
    parser.set_authenticated()
    assert parser.authenticated
    ok_line = b"a3 SEARCH " + b"ALL " * 2000 + b"ALL\r\n"  # ~8 KiB: fine after LOGIN
    (event,) = feed(parser, ok_line)
    assert isinstance(event, ev.CommandReceived)
    too_long = b"a4 SEARCH " + b"ALL " * 17000 + b"ALL\r\n"
    assert feed(parser, too_long) == [ev.BadCommand("a4", "command line too long", ev.BadReason.LINE_TOO_LONG)]


def test_overlong_line_without_newline_is_skipped_without_buffering() -> None:
    parser = CommandParser()
    assert feed(parser, b"a1 NOOP ") == []
    for _ in range(100):
        assert feed(parser, b"z" * 4096) == []
        assert parser.buffered <= 8 * 1024 + 4096
    assert feed(parser, b"{3+}\r\nabc\r\na2 NOOP\r\n") == [
        ev.BadCommand("a1", "command line too long", ev.BadReason.LINE_TOO_LONG),
        ev.CommandReceived("a2", c.Noop()),
    ]


def test_non_append_literal_limit_sync_refused_before_data() -> None:
    parser = CommandParser(authenticated=True)
    events = feed(parser, b"a1 SEARCH TEXT {200000}\r\na2 NOOP\r\n")
    assert events == [ev.LiteralTooBig("a1", 200000, 128 * 1024, append=False), ev.CommandReceived("a2", c.Noop())]


def test_non_sync_literal_over_limit_is_discarded_then_reported() -> None:
    parser = CommandParser(authenticated=True)
    assert feed(parser, b"a1 SEARCH TEXT {300000+}\r\n") == []
    for _ in range(60):
        assert feed(parser, b"q" * 5000) == []
        assert parser.buffered == 0
    assert feed(parser, b" SEEN\r\na2 NOOP\r\n") == [
        ev.LiteralTooBig("a1", 300000, 128 * 1024, append=False),
        ev.CommandReceived("a2", c.Noop()),
    ]


def test_non_sync_literal_over_limit_exact() -> None:
    parser = CommandParser(authenticated=True)
    data = b"a1 SEARCH TEXT {300000+}\r\n" + b"q" * 300000 + b" SEEN {2+}\r\nxy\r\na2 NOOP\r\n"
    events = feed(parser, data)
    assert events == [ev.LiteralTooBig("a1", 300000, 128 * 1024, append=False), ev.CommandReceived("a2", c.Noop())]


def test_literal_limit_before_authentication_is_small() -> None:
    parser = CommandParser()
    events = feed(parser, b"a1 LOGIN bob {9000}\r\na2 NOOP\r\n")
    assert events == [ev.LiteralTooBig("a1", 9000, 8 * 1024, append=False), ev.CommandReceived("a2", c.Noop())]


def test_total_command_limit_counts_literals() -> None:
    limits = ParserLimits(literal_after_auth=100, command_after_auth=250)
    parser = CommandParser(limits, authenticated=True)
    data = b"a1 SEARCH TEXT {100+}\r\n" + b"a" * 100 + b" BODY {100+}\r\n" + b"b" * 100 + b" FROM {100+}\r\n"
    data += b"c" * 100 + b"\r\na2 NOOP\r\n"
    events = feed(parser, data)
    assert events == [
        ev.BadCommand("a1", "command too long", ev.BadReason.COMMAND_TOO_LONG),
        ev.CommandReceived("a2", c.Noop()),
    ]
    # synchronizing: refused at once, before the client sends the third literal
    parser.receive_data(
        b"a3 SEARCH TEXT {100+}\r\n" + b"a" * 100 + b" BODY {100+}\r\n" + b"b" * 100 + b" FROM {100}\r\n"
    )
    assert drain(parser) == [ev.BadCommand("a3", "command too long", ev.BadReason.COMMAND_TOO_LONG)]
    assert parser.buffered == 0


# --- APPEND streaming ------------------------------------------------------------


def test_append_streams_in_bounded_chunks() -> None:
    limits = ParserLimits(append_chunk=1000)
    parser = CommandParser(limits, authenticated=True)
    body = bytes(range(256)) * 40  # 10240 bytes, every byte value
    events = feed(parser, b"a1 APPEND INBOX {10240+}\r\n" + body + b"\r\n")
    chunks = [e for e in events if isinstance(e, ev.AppendChunk)]
    assert all(len(ch.data) <= 1000 for ch in chunks)
    assert b"".join(ch.data for ch in chunks) == body
    assert events[0] == ev.AppendStart("a1", "INBOX")
    assert events[1] == ev.AppendMessageStart("a1", (), None, 10240)
    assert events[-2:] == [ev.AppendMessageEnd("a1"), ev.AppendEnd("a1")]


def test_append_over_appendlimit_sync_is_refused_before_data() -> None:
    parser = CommandParser(authenticated=True)
    events = feed(parser, b"a1 APPEND INBOX {20971521}\r\na2 NOOP\r\n")
    assert events == [
        ev.LiteralTooBig("a1", 20971521, 20 * 1024 * 1024, append=True),
        ev.CommandReceived("a2", c.Noop()),
    ]


def test_append_over_appendlimit_non_sync_is_discarded_without_buffering() -> None:
    limits = ParserLimits(append_limit=1000)
    parser = CommandParser(limits, authenticated=True)
    assert feed(parser, b"a1 APPEND INBOX {50000+}\r\n") == []
    for _ in range(50):
        assert feed(parser, b"x" * 1000) == []
        assert parser.buffered == 0
    assert feed(parser, b"\r\na2 NOOP\r\n") == [
        ev.LiteralTooBig("a1", 50000, 1000, append=True),
        ev.CommandReceived("a2", c.Noop()),
    ]


def test_multiappend_second_message_too_big() -> None:
    limits = ParserLimits(append_limit=10)
    parser = CommandParser(limits, authenticated=True)
    events = feed(parser, b"a1 APPEND INBOX {2+}\r\nok {20+}\r\n" + b"z" * 20 + b"\r\na2 NOOP\r\n")
    assert events == [
        ev.AppendStart("a1", "INBOX"),
        ev.AppendMessageStart("a1", (), None, 2),
        ev.AppendChunk("a1", b"ok"),
        ev.AppendMessageEnd("a1"),
        ev.LiteralTooBig("a1", 20, 10, append=True),
        ev.CommandReceived("a2", c.Noop()),
    ]


def test_append_mailbox_as_literal_and_binary_message() -> None:
    parser = CommandParser(authenticated=True)
    events = feed(parser, b"a1 APPEND {6+}\r\nSent/x ~{3+}\r\n\x00\x01\x02\r\n")
    assert events == [
        ev.AppendStart("a1", "Sent/x"),
        ev.AppendMessageStart("a1", (), None, 3, binary=True),
        ev.AppendChunk("a1", b"\x00\x01\x02"),
        ev.AppendMessageEnd("a1"),
        ev.AppendEnd("a1"),
    ]


def test_append_discard_command_skips_the_rest() -> None:
    parser = CommandParser(authenticated=True)
    parser.receive_data(b"a1 APPEND Nope {10+}\r\n01234")
    assert parser.next_event() == ev.AppendStart("a1", "Nope")
    parser.discard_command()  # mailbox does not exist: drop the data
    assert parser.next_event() is ev.NEED_DATA
    events = feed(parser, b"56789 {3+}\r\nabc\r\na2 NOOP\r\n")
    assert events == [ev.CommandDiscarded("a1"), ev.CommandReceived("a2", c.Noop())]


def test_append_discard_at_sync_literal_answers_before_data() -> None:
    parser = CommandParser(authenticated=True)
    parser.receive_data(b"a1 APPEND Nope {10}\r\n")
    assert parser.next_event() == ev.AppendStart("a1", "Nope")
    parser.discard_command()
    assert drain(parser) == [ev.CommandDiscarded("a1")]
    assert feed(parser, b"a2 NOOP\r\n") == [ev.CommandReceived("a2", c.Noop())]


def test_append_bad_date_is_bad_before_any_data() -> None:
    parser = CommandParser(authenticated=True)
    events = feed(parser, b'a1 APPEND INBOX "32-Jan-2026 00:00:00 +0000" {3+}\r\nabc\r\na2 NOOP\r\n')
    assert events == [ev.BadCommand("a1", "invalid date-time"), ev.CommandReceived("a2", c.Noop())]


def test_append_before_login_is_not_streamed() -> None:
    parser = CommandParser()
    events = feed(parser, b"a1 APPEND INBOX {3+}\r\nabc\r\n")
    assert len(events) == 1
    assert isinstance(events[0], ev.CommandReceived)
    assert isinstance(events[0].command, c.Append)


# --- IDLE, AUTHENTICATE, STARTTLS ----------------------------------------------


def test_idle_done_and_pipelined_command() -> None:
    parser = CommandParser(authenticated=True)
    assert feed(parser, b"a1 IDLE\r\n") == [ev.CommandReceived("a1", c.Idle())]
    parser.begin_idle("a1")
    assert parser.idling
    assert feed(parser, b"DO") == []
    assert feed(parser, b"ne\r\na2 NOOP\r\n") == [ev.IdleDone("a1"), ev.CommandReceived("a2", c.Noop())]
    assert not parser.idling


def test_idle_anything_but_done() -> None:
    parser = CommandParser(authenticated=True)
    parser.begin_idle("a1")
    assert feed(parser, b"a2 NOOP\r\n") == [ev.BadCommand("a1", "expected DONE", ev.BadReason.EXPECTED_DONE)]


def test_authenticate_exchange() -> None:
    parser = CommandParser()
    assert feed(parser, b"a1 AUTHENTICATE PLAIN\r\n") == [ev.CommandReceived("a1", c.Authenticate("PLAIN"))]
    parser.begin_auth_response("a1")
    assert feed(parser, b"AGJvYgBzZWNyZXQ=\r\n") == [ev.AuthResponse("a1", b"\x00bob\x00secret")]
    parser.begin_auth_response("a1")
    assert feed(parser, b"*\r\n") == [ev.AuthResponse("a1", None)]
    parser.begin_auth_response("a1")
    assert feed(parser, b"%%%\r\n") == [ev.BadCommand("a1", "invalid base64", ev.BadReason.BAD_BASE64)]


def test_take_unprocessed_after_starttls() -> None:
    parser = CommandParser()
    parser.receive_data(b"a1 STARTTLS\r\na2 LOGIN evil injected\r\n")
    assert parser.next_event() == ev.CommandReceived("a1", c.StartTls())
    assert parser.take_unprocessed() == b"a2 LOGIN evil injected\r\n"
    assert parser.next_event() is ev.NEED_DATA


def test_resync_over_literals_at_every_split() -> None:
    """An overlong line ending in {n+}, then a too-big {n+}: skipped correctly however the bytes arrive."""
    limits = ParserLimits(line_before_auth=40, literal_before_auth=8)
    wire = b"a1 LOGIN " + b"u" * 60 + b" {5+}\r\nab\r\nc\r\na2 LOGIN x {20+}\r\n" + b"L" * 20 + b"\r\na3 NOOP\r\n"
    expected = [
        ev.BadCommand("a1", "command line too long", ev.BadReason.LINE_TOO_LONG),
        ev.LiteralTooBig("a2", 20, 8, append=False),
        ev.CommandReceived("a3", c.Noop()),
    ]
    for cut in range(len(wire) + 1):
        for cut2 in (cut, min(cut + 7, len(wire))):
            parser = CommandParser(limits)
            events = feed(parser, wire[:cut]) + feed(parser, wire[cut:cut2]) + feed(parser, wire[cut2:])
            assert events == expected, (cut, cut2)


def test_append_date_day_forms() -> None:
    parser = CommandParser(authenticated=True, stream_append=False)
    for day in (b" 7", b"07", b"7"):
        (event,) = feed(parser, b'a1 APPEND INBOX "%s-Feb-1994 21:52:25 -0800" {1+}\r\nx\r\n' % day)
        assert isinstance(event, ev.CommandReceived) and isinstance(event.command, c.Append)
        date = event.command.messages[0].internal_date
        assert date is not None and (date.day, date.utcoffset()) == (7, -datetime.timedelta(hours=8))


def test_tls_handshake_on_plaintext_port_is_garbage_at_once() -> None:
    parser = CommandParser()
    client_hello_start = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(0x80, 0xA0))
    assert feed(parser, client_hello_start) == [
        ev.BadCommand(None, "binary data is not an IMAP command", ev.BadReason.GARBAGE)
    ]
    assert parser.buffered == 0
    # if the peer was only confused, the stream recovers at the next line
    assert feed(parser, b"more\r\na1 NOOP\r\n") == [ev.CommandReceived("a1", c.Noop())]


def test_literal8_only_for_append_messages() -> None:
    parser = CommandParser(authenticated=True)
    events = feed(parser, b"a1 LOGIN ~{3+}\r\nbob x\r\na2 APPEND ~{5+}\r\nINBOX {1+}\r\nm\r\na3 NOOP\r\n")
    assert events == [
        ev.BadCommand("a1", "literal8 is only allowed for APPEND message data"),
        ev.BadCommand("a2", "literal8 is only allowed for APPEND message data"),
        ev.CommandReceived("a3", c.Noop()),
    ]


def _mid(p: CommandParser) -> bool:
    return p.mid_command  # a call, so the checker does not narrow the property between feeds


def _drain_all(p: CommandParser) -> list[ev.Event]:
    out: list[ev.Event] = []
    while not isinstance(event := p.next_event(), ev.NeedData):
        out.append(event)
        if isinstance(event, ev.ContinuationNeeded):
            break
    return out


def test_mid_command_tells_when_the_client_still_owes_part_of_a_command() -> None:
    """imapd acknowledges a read at once exactly when this is true (issue 13: a client
    writing a literal and its CRLF separately waited for the delayed ACK)."""
    p = CommandParser(authenticated=True)
    assert not _mid(p)
    p.receive_data(b"a NOOP\r\n")
    assert isinstance(_drain_all(p)[-1], ev.CommandReceived)
    assert not _mid(p)
    p.receive_data(b"b NO")
    _drain_all(p)
    assert _mid(p)  # half a line
    p.receive_data(b"OP\r\n")
    _drain_all(p)
    assert not _mid(p)
    p.receive_data(b"c APPEND INBOX {5}\r\n")
    assert isinstance(_drain_all(p)[-1], ev.ContinuationNeeded)
    p.accept_literal()
    p.receive_data(b"hel")
    _drain_all(p)
    assert _mid(p)  # inside the literal
    p.receive_data(b"lo")
    _drain_all(p)
    assert _mid(p)  # the literal is complete, its CRLF is not
    p.receive_data(b"\r\n")
    assert isinstance(_drain_all(p)[-1], ev.AppendEnd)
    assert not _mid(p)
    p.receive_data(b"d LOGIN x {2}\r\n")
    _drain_all(p)
    p.accept_literal()
    p.receive_data(b"pw")
    _drain_all(p)
    assert _mid(p)  # a small literal inside a command line


def test_catenate_after_a_streamed_message_is_read_whole() -> None:
    """MULTIAPPEND: the plain message streams; from the CATENATE on the rest is one AppendRest."""
    wire = b'a APPEND Drafts {3+}\r\nabc (\\Seen) CATENATE (TEXT {2+}\r\nxy URL "/INBOX/;UID=1") UTF8 (~{2+}\r\nhi)\r\n'
    for events in (
        feed(CommandParser(authenticated=True), wire),
        feed_bytewise(CommandParser(authenticated=True), wire),
    ):
        events = merge_chunks(events)
        assert events == [
            ev.AppendStart("a", "Drafts"),
            ev.AppendMessageStart("a", (), None, 3, False),
            ev.AppendChunk("a", b"abc"),
            ev.AppendMessageEnd("a"),
            ev.AppendRest(
                "a",
                (
                    c.AppendMessage(
                        ("\\Seen",), None, b"", catenate=(c.CatenateText(b"xy"), c.CatenateUrl("/INBOX/;UID=1"))
                    ),
                    c.AppendMessage((), None, b"hi", True),
                ),
            ),
            ev.AppendEnd("a"),
        ], events
    # Without a literal after the CATENATE, and a syntax error in the rest.
    events = merge_chunks(
        feed(CommandParser(authenticated=True), b'a APPEND Drafts {1+}\r\nx CATENATE (URL "/a/;UID=1")\r\n')
    )
    assert isinstance(events[-2], ev.AppendRest) and events[-1] == ev.AppendEnd("a"), events
    events = feed(CommandParser(authenticated=True), b"a APPEND Drafts {1+}\r\nx CATENATE (FOO)\r\nb NOOP\r\n")
    assert isinstance(events[-2], ev.BadCommand) and events[-2].tag == "a", events
    assert events[-1] == ev.CommandReceived("b", c.Noop()), events


def test_repeated_lines_give_what_the_grammar_gives() -> None:
    """A logged-in connection's repeated one-line commands skip the grammar (issue 13): the
    events must be the ones a fresh parse gives, for any tag, name mode and limit."""
    lines = [b"NOOP", b"UID FETCH 1:* (FLAGS)", b'SELECT "caf\xc3\xa9"', b"SEARCH UNSEEN", b"FROB", b"FETCH 1 (FLAGS"]
    parser = CommandParser(authenticated=True)
    for round_ in range(3):
        for i, rest in enumerate(lines):
            wire = b"t%d.%d " % (round_, i) + rest + b"\r\n"
            assert feed(parser, wire) == feed(CommandParser(authenticated=True), wire)
    # Lines are remembered per name mode: 8-bit names are UTF-8 only once enabled.
    parser.utf8_names = True
    wire = b'u1 SELECT "caf\xc3\xa9"\r\n'
    assert feed(parser, wire) == feed(CommandParser(authenticated=True, utf8_names=True), wire)
    assert feed(parser, wire)[0] == ev.CommandReceived("u1", c.Select("caf\u00e9"))
    # A bad tag is still refused, whatever the rest of the line.
    assert feed(parser, b"a{b NOOP\r\n") == feed(CommandParser(authenticated=True), b"a{b NOOP\r\n")


def test_repeated_append_heads_give_what_a_fresh_parse_gives() -> None:
    """A streamed APPEND's head (mailbox, flags, date) is remembered per text and name mode
    (issue 13): each repeat must give a fresh parser's events, UTF8 and CATENATE included."""
    heads = [
        b"APPEND INBOX {3}",
        b'APPEND "caf\xc3\xa9" (\\Seen $Junk) "07-Dec-2026 01:02:03 +0100" {3}',
        b"APPEND INBOX (\\Seen) {3}",
        b"APPEND INBOX UTF8 (~{3}",
        b"APPEND INBOX CATENATE (TEXT {3}",
        b'APPEND INBOX "31-Feb-2026 00:00:00 +0000" {3}',
        b"APPEND INBOX (\\Seen {3}",
    ]

    def run(parser: CommandParser, wire: bytes) -> list[ev.Event]:
        events: list[ev.Event] = []
        parser.receive_data(wire)
        while not isinstance(event := parser.next_event(), ev.NeedData):
            events.append(event)
            if isinstance(event, ev.ContinuationNeeded):
                parser.accept_literal()
        return events

    def tail(head: bytes) -> bytes:
        return b"abc)\r\n" if b"UTF8" in head else b"abc)\r\n" if b"CATENATE" in head else b"abc\r\n"

    for utf8 in (False, True):
        parser = CommandParser(authenticated=True, utf8_names=utf8)
        for round_ in range(3):
            for i, head in enumerate(heads):
                wire = b"t%d.%d " % (round_, i) + head + b"\r\n" + tail(head)
                fresh = run(CommandParser(authenticated=True, utf8_names=utf8), wire)
                assert run(parser, wire) == fresh, (utf8, head)
    # The head remembered under one name mode is not taken for the other.
    parser = CommandParser(authenticated=True, utf8_names=True)
    assert run(parser, b'a APPEND "caf\xc3\xa9" {1+}\r\nx\r\n')[0] == ev.AppendStart("a", "caf\u00e9")
    parser.utf8_names = False  # (a parser is never switched back; this only shows the key)
    assert isinstance(run(parser, b'b APPEND "caf\xc3\xa9" {1+}\r\nx\r\n')[0], ev.BadCommand)


def test_a_remembered_line_still_meets_the_line_limit() -> None:
    limits = ParserLimits(line_after_auth=20)
    parser = CommandParser(limits, authenticated=True)
    assert feed(parser, b"a1 NOOP\r\n") == [ev.CommandReceived("a1", c.Noop())]
    long_tag = b"t" * 16
    assert feed(parser, long_tag + b" NOOP\r\n") == [
        ev.BadCommand(long_tag.decode(), "command line too long", ev.BadReason.LINE_TOO_LONG)
    ]
