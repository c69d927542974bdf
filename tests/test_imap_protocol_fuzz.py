"""Fuzz the sans-IO parser: arbitrary bytes, arbitrary chunkings, arbitrary caller decisions.

Asserts that next_event() only ever returns documented events (never raises),
that the bytes it holds stay within its limits plus one unread chunk, and that
it always makes progress: after any input, a line break, some padding and a
NOOP, the NOOP comes out.
"""

from __future__ import annotations

import itertools
import re
import typing

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imapd.protocol import commands as c
from imapd.protocol import events as ev
from imapd.protocol.parser import CommandParser, ParserLimits
from tests.test_imap_protocol_commands import CASES

LIMITS = ParserLimits(
    line_before_auth=64,
    line_after_auth=64,
    literal_before_auth=48,
    literal_after_auth=48,
    command_before_auth=128,
    command_after_auth=128,
    append_limit=100,
    append_chunk=16,
)
EVENT_TYPES = typing.get_args(ev.Event)
# The most a parser may hold after draining: a command at its limit plus a partial line.
HELD_BOUND = LIMITS.command_after_auth + LIMITS.line_after_auth + 64

NAMES = st.sampled_from(
    (
        *(b"LOGIN", b"APPEND", b"SELECT", b"UID FETCH", b"FETCH", b"SEARCH", b"STORE", b"IDLE", b"LIST"),
        *(b"STATUS", b"AUTHENTICATE", b"ID", b"ENABLE", b"NOOP", b"CAPABILITY", b"COPY", b"UID EXPUNGE", b"FROB"),
    )
)
ARGS = st.sampled_from(
    [
        b"INBOX",
        b"bob",
        b"1:*",
        b"(FLAGS BODY.PEEK[HEADER.FIELDS (From)]<0.10>)",
        b"OR (FROM x) NOT 1:5",
        b"(QRESYNC (1 2 1:3 (1 1)))",
        b"+FLAGS (\\Seen)",
        b'"quo\\"ted"',
        b'(\\Seen) "01-Jan-2026 00:00:00 +0000"',
        b"PLAIN AGJvYgBzZWNyZXQ=",
        b'("name" NIL)',
        b"(",
        b")",
        b"\x00",
        b"\xff\xfe",
        b"&Jjo-",
        b"DONE",
        b"9" * 5000,
        b"1:" + b"9" * 30,
        b"&" + b"A" * 3000 + b"-",
        b'CATENATE (URL "/INBOX/;UID=1" TEXT',
        b"CATENATE (",
        b"UTF8 (",
        b"RETURN (UPDATE PARTIAL 1:9)",
    ]
)
# A literal announcement followed by some bytes (right, too few or too many for its size).
SIZES = st.sampled_from([0, 1, 3, 5, 47, 49, 99, 101, 200])
MARKERS = st.sampled_from([(b"", b""), (b"", b"+"), (b"~", b"+")])


def _literal(size: int, marker: tuple[bytes, bytes], body: bytes, exact: bool) -> bytes:
    if exact:
        body = (body * (size // max(len(body), 1) + 1))[:size] if body else b"\0" * size
    return b"%s{%d%s}\r\n%s" % (marker[0], size, marker[1], body)


# A literal announcement followed by its bytes (mostly exactly as many as announced).
LITERAL = st.builds(_literal, SIZES, MARKERS, st.binary(max_size=120), st.sampled_from([True, True, True, False]))
COMMAND = st.builds(
    lambda tag, name, args, end: tag + b" " + name + b"".join(b" " + a for a in args) + end,
    st.sampled_from([b"a1", b"t2", b"a1", b"t2", b"*", b"+", b"x{3}", b""]),
    NAMES,
    st.lists(st.one_of(ARGS, ARGS, LITERAL), max_size=5),
    st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\n", b"", b"\r"]),
)
# Well-formed commands (every form of the command tests), some of them over the small fuzz limits.
VALID = st.sampled_from([line + b"\r\n" for line, _ in CASES]) | st.builds(
    lambda size: b"a3 APPEND INBOX (\\Seen) {%d+}\r\n%s\r\n" % (size, b"m" * size), SIZES
)
CHUNKS = st.lists(
    st.one_of(VALID, VALID, COMMAND, COMMAND, st.binary(max_size=40), st.sampled_from([b"DONE\r\n", b"*\r\n"])),
    max_size=12,
).map(b"".join)


def run(
    parser: CommandParser, data: bytes, cuts: list[int], decisions: st.DataObject, *, idle: bool, bound: bool = True
) -> list[ev.Event]:
    """Feed `data` split at `cuts`, draining after each piece with random caller decisions."""
    events: list[ev.Event] = []
    points = sorted({min(cut, len(data)) for cut in cuts} | {0, len(data)})
    for start, end in itertools.pairwise(points):
        parser.receive_data(data[start:end])
        while True:
            event = parser.next_event()
            assert isinstance(event, EVENT_TYPES)
            if event is ev.NEED_DATA:
                break
            events.append(event)
            if isinstance(event, ev.ContinuationNeeded):
                if decisions.draw(st.booleans()):
                    parser.accept_literal()
                else:
                    parser.reject_literal()
            elif isinstance(event, ev.AppendStart | ev.AppendChunk) and decisions.draw(st.integers(0, 9)) == 0:
                parser.discard_command()
            elif isinstance(event, ev.CommandReceived):
                if isinstance(event.command, c.Login):
                    parser.set_authenticated()
                elif idle and isinstance(event.command, c.Idle):
                    parser.begin_idle(event.tag)
                elif idle and isinstance(event.command, c.Authenticate):
                    parser.begin_auth_response(event.tag)
        if bound:
            assert parser.buffered <= HELD_BOUND + (end - start)
    return events


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=CHUNKS, cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12), decisions=st.data())
def test_arbitrary_input_only_yields_documented_events(data: bytes, cuts: list[int], decisions: st.DataObject) -> None:
    parser = CommandParser(LIMITS, authenticated=decisions.draw(st.booleans()))
    run(parser, data, cuts, decisions, idle=True)


# Literals the padding below can always absorb (bigger ones are discarded byte by byte, correctly, but
# would need more padding than a fixed sentinel has).
_BIG_LITERAL = re.compile(rb"\{[0-9]{3,}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=CHUNKS, cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8), decisions=st.data())
def test_parser_always_recovers(data: bytes, cuts: list[int], decisions: st.DataObject) -> None:
    if _BIG_LITERAL.search(data):
        data = _BIG_LITERAL.sub(b"{", data)
    parser = CommandParser(LIMITS, authenticated=decisions.draw(st.booleans()))
    sentinel = b"\r\n" + b" " * 250 + b"\r\n" + b" " * 250 + b"\r\nzz9 NOOP\r\n"
    events = run(parser, data + sentinel, cuts, decisions, idle=False)
    assert events[-1] == ev.CommandReceived("zz9", c.Noop())
    assert parser.buffered == 0


@settings(max_examples=150, deadline=None)
@given(body=st.binary(max_size=300), cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=10))
def test_append_stream_reassembles_exactly(body: bytes, cuts: list[int]) -> None:
    limits = ParserLimits(append_chunk=7)
    wire = b"a1 APPEND INBOX {%d+}\r\n" % len(body) + body + b"\r\na2 NOOP\r\n"
    parser = CommandParser(limits, authenticated=True)
    points = sorted({min(cut, len(wire)) for cut in cuts} | {0, len(wire)})
    events: list[ev.Event] = []
    for start, end in itertools.pairwise(points):
        parser.receive_data(wire[start:end])
        while (event := parser.next_event()) is not ev.NEED_DATA:
            events.append(event)
    chunks = [e.data for e in events if isinstance(e, ev.AppendChunk)]
    assert b"".join(chunks) == body
    assert all(0 < len(chunk) <= 7 for chunk in chunks)
    assert events[-2:] == [ev.AppendEnd("a1"), ev.CommandReceived("a2", c.Noop())]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=CHUNKS, cuts=st.lists(st.integers(min_value=0, max_value=20000), max_size=8), decisions=st.data())
def test_default_limits_with_long_lines(data: bytes, cuts: list[int], decisions: st.DataObject) -> None:
    parser = CommandParser(authenticated=decisions.draw(st.booleans()))
    for event in run(parser, data, cuts, decisions, idle=True, bound=False):
        assert isinstance(event, EVENT_TYPES)
    assert parser.buffered <= len(data)
