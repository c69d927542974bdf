"""Incremental IMAP command parser (h11 style): bytes in, events out, no I/O.

Usage by the server (one parser per connection)::

    parser.receive_data(data)
    while True:
        event = parser.next_event()
        if event is NEED_DATA: break            # read more from the socket
        ...                                     # handle the event

Events (imapd.protocol.events):

- `CommandReceived(tag, command)`: a complete command. The server checks the
  state table (states.py), runs it and answers.
- `ContinuationNeeded(tag, size)`: the client announced a synchronizing
  literal {size} and waits. Either send a continuation request ("+ Ready")
  and call `accept_literal()`, or answer the tag NO/BAD and call
  `reject_literal()` (the client then abandons the command). `next_event()`
  raises UsageError until one of them is called.
- `LiteralTooBig(tag, size, limit, append)`: answer NO [TOOBIG]. Never
  buffered: a synchronizing literal is refused before its data is sent; a
  non-synchronizing {n+} is skipped byte by byte, and the event comes once
  the rest of the command has been skipped.
- `BadCommand(tag, text, reason)`: answer BAD (tagged when `tag` is known;
  reason LINE_TOO_LONG / COMMAND_TOO_LONG deserve [TOOBIG], BAD_CHARSET is
  answered NO [BADCHARSET ...]). The parser has already resynchronised at the
  end of the command, skipping announced non-synchronizing literals.
  Counting bad commands is the server's job. Reason GARBAGE (a line that
  starts with a control or 8-bit byte, e.g. a TLS handshake on the plaintext
  port) comes as soon as the first byte is seen: answer "* BYE" and close.
- ENABLE UTF8=ACCEPT: set `parser.utf8_names = True` to take 8-bit mailbox
  names as UTF-8 instead of requiring modified UTF-7.
- IDLE: after answering IDLE with "+ idling", call `begin_idle(tag)`; the next
  line yields `IdleDone(tag)` for DONE, or `BadCommand(tag, reason=EXPECTED_DONE)`.
- AUTHENTICATE: after sending a "+ <challenge>" line, call
  `begin_auth_response(tag)`; the next line yields `AuthResponse(tag, data)`
  (data None when the client cancelled with "*").
- STARTTLS / COMPRESS: after answering OK, `take_unprocessed()` returns (and
  drops) bytes the client sent too early: plaintext pipelined after STARTTLS
  must be thrown away (command injection), bytes after COMPRESS are compressed.

APPEND streaming (when authenticated and `stream_append` is on, the default)
is agreed with the session as this sequence for one APPEND command::

    AppendStart(tag, mailbox)                       once, at the first message literal
    ( AppendMessageStart(tag, flags, date, size, binary)
      [ContinuationNeeded(tag, size)]               only for a synchronizing literal
      AppendChunk(tag, data)*                       <= limits.append_chunk bytes each, sum == size
      AppendMessageEnd(tag) )+                      one group per message (MULTIAPPEND)
    [AppendRest(tag, messages)]                     the messages from a CATENATE (RFC 4469) on, read whole
    AppendEnd(tag)                                  the command is complete: commit, answer OK

An APPEND whose first message is a CATENATE is not streamed at all (CommandReceived(Append)).

After AppendStart the command ends with exactly one of AppendEnd,
BadCommand(tag), LiteralTooBig(tag) (a later message over APPENDLIMIT), or
the server's own abandonment: `reject_literal()` at a ContinuationNeeded, or
`discard_command()` at any point before AppendEnd (e.g. the mailbox does not exist, over
quota), which skips the rest of the command without buffering and then
yields `CommandDiscarded(tag)`. On anything but AppendEnd the session drops
what it staged. A message literal counts against `append_limit` only, never
against the line or command limits. Before authentication, APPEND literals
are ordinary literals (small limits), so an unauthenticated client cannot
stream anything.

Limits (ParserLimits, switched by `set_authenticated()`): the command line
(all text of one command, literals excluded), each literal, and the whole
command (text plus literals) are capped. After next_event() returns
NEED_DATA the parser holds at most command limit + line limit bytes (the
fuzz test asserts it); bytes given to receive_data() and not yet parsed come
on top, so feed one network read at a time and drain before the next.
"""

from __future__ import annotations

import datetime
import enum
import re
from collections import deque
from dataclasses import dataclass
from typing import Final

from imapd.protocol import commands as c
from imapd.protocol import events as ev
from imapd.protocol.command_grammar import (
    COMMAND_NAMES,
    CommandParseError,
    cacheable,
    decode_base64,
    parse_command,
    split_tag,
)
from imapd.protocol.command_grammar import append_message_head as _append_head
from imapd.protocol.errors import ParseError, UsageError
from imapd.protocol.reader import Reader

KIB: Final = 1024
MIB: Final = 1024 * KIB

# A literal announcement at the end of a line: {n}, {n+}, ~{n}, ~{n+}.
_LITERAL: Final = re.compile(rb"(~?)\{([0-9]{1,20})(\+?)\}$")
# Distinct repeated command lines remembered per connection (`CommandParser._repeats`).
_MAX_REPEATS: Final = 32
# APPEND heads (mailbox, flags, date) remembered per connection, and the longest one kept.
_MAX_APPEND_HEADS: Final = 8
_APPEND_HEAD_KEPT: Final = 512
# How much of a skipped line is kept to spot a literal announcement at its end.
_TAIL: Final = 32
_GARBAGE_START: Final = frozenset(range(0x20)) - {0x0D, 0x0A} | frozenset(range(0x7F, 0x100))


@dataclass(frozen=True, slots=True)
class ParserLimits:
    line_before_auth: int = 8 * KIB
    line_after_auth: int = 64 * KIB
    literal_before_auth: int = 8 * KIB
    literal_after_auth: int = 128 * KIB
    command_before_auth: int = 16 * KIB
    # ID before login: RFC 2971 allows 30 field/value pairs with values of up to 1024 octets.
    id_before_auth: int = 34 * KIB
    command_after_auth: int = 256 * KIB
    append_limit: int = 20 * MIB  # APPENDLIMIT, per message
    append_chunk: int = 64 * KIB  # largest AppendChunk


# flags and INTERNALDATE before an APPEND message literal
_AppendHead = tuple[tuple[str, ...], datetime.datetime | None]


class _Catenate(Exception):
    """The APPEND message being announced is a CATENATE: not streamed. `rest` is the command text
    from that message on (after the previous message's literal and a UTF8 message's ")")."""

    def __init__(self, rest: bytes) -> None:
        super().__init__("CATENATE")
        self.rest = rest


# Stands for the command's start when the rest of a streamed APPEND is read whole: the grammar
# then reads the remaining messages (the mailbox is already known).
_REST_PREFIX: Final = b"r APPEND INBOX"


_ID_COMMAND: Final = re.compile(rb"[^ \r\n]+ ID[ (]", re.IGNORECASE)


class _Mode(enum.Enum):
    LINE = "line"  # reading command text up to LF
    LITERAL = "literal"  # buffering a (small) literal of the command
    AWAIT_CONTINUATION = "await-continuation"  # ContinuationNeeded yielded; caller must accept/reject
    APPEND_DATA = "append-data"  # streaming a message literal as AppendChunk events
    DISCARD_LINE = "discard-line"  # resync: skipping to the end of the line
    DISCARD_LITERAL = "discard-literal"  # resync: skipping an announced {n+} literal
    IDLE = "idle"  # waiting for DONE
    AUTH_RESPONSE = "auth-response"  # waiting for one SASL response line

    # Members are singletons compared by identity: hashed as objects, in C. Enum's own
    # __hash__ is a Python call (hash of the name), two per mode change (issue 13).
    __hash__ = object.__hash__


M = _Mode

# Every mode change the parser makes; _goto() enforces it (the fuzz test drives all of them).
_NEXT_MODES: Final[dict[_Mode, frozenset[_Mode]]] = {
    M.LINE: frozenset(
        {M.LITERAL, M.AWAIT_CONTINUATION, M.APPEND_DATA, M.DISCARD_LINE, M.DISCARD_LITERAL, M.IDLE, M.AUTH_RESPONSE}
    ),
    M.LITERAL: frozenset({M.LINE, M.DISCARD_LITERAL}),
    M.AWAIT_CONTINUATION: frozenset({M.LITERAL, M.APPEND_DATA, M.LINE}),
    M.APPEND_DATA: frozenset({M.LINE, M.DISCARD_LITERAL}),
    M.DISCARD_LINE: frozenset({M.DISCARD_LITERAL, M.LINE}),
    M.DISCARD_LITERAL: frozenset({M.DISCARD_LINE}),
    M.IDLE: frozenset({M.LINE}),
    M.AUTH_RESPONSE: frozenset({M.LINE}),
}


class CommandParser:
    """Sans-IO parser of one connection's client stream."""

    def __init__(
        self,
        limits: ParserLimits = ParserLimits(),
        *,
        authenticated: bool = False,
        stream_append: bool = True,
        utf8_names: bool = False,
    ) -> None:
        self.limits = limits
        self._stream_append = stream_append
        self.utf8_names = utf8_names
        self._buf = bytearray()
        self._scan = 0  # bytes of _buf already searched for LF
        self._events: deque[ev.Event] = deque()
        self._mode = _Mode.LINE
        self._after_accept = _Mode.LITERAL
        self._set_limits(authenticated)
        self._reset_command()
        self._remaining = 0  # bytes left of the literal being read or skipped
        self._tail = b""  # end of the line being skipped
        self._pending: ev.Event | None = None  # yielded when a skip ends
        self._wait_tag = ""  # tag of IDLE / AUTHENTICATE
        # Logged-in one-line commands this connection sent before, by the text after the tag
        # (and the name mode): a repeat skips the command checks and the grammar (issue 13).
        self._repeats: dict[tuple[bytes, bool], c.Command] = {}
        # The same for the head of a streamed APPEND (the text before its first message's
        # literal): a client appending again and again sends the same one (issue 13).
        self._append_heads: dict[tuple[bytes, bool], tuple[str, tuple[str, ...], datetime.datetime | None]] = {}

    # --- public API ----------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def set_authenticated(self, authenticated: bool = True) -> None:
        """Switch to the limits of the authenticated states (call after LOGIN/AUTHENTICATE succeeds)."""
        self._set_limits(authenticated)

    @property
    def authenticated(self) -> bool:
        return self._authenticated

    @property
    def buffered(self) -> int:
        """Bytes held in memory: unparsed input plus the command being assembled."""
        held = sum(map(len, self._segments)) + sum(map(len, self._literals)) + len(self._literal_buf)
        return len(self._buf) + held

    @property
    def mid_command(self) -> bool:
        """Part of a command has arrived and the client has more of it to send
        (the rest of a line, a literal, the CRLF after a literal) before any answer."""
        if self._buf or self._segments:
            return True
        return self._mode in (_Mode.LITERAL, _Mode.APPEND_DATA, _Mode.DISCARD_LINE, _Mode.DISCARD_LITERAL)

    @property
    def idling(self) -> bool:
        return self._mode is _Mode.IDLE

    @property
    def awaiting_continuation(self) -> bool:
        return self._mode is _Mode.AWAIT_CONTINUATION

    def accept_literal(self) -> None:
        self._require_await()
        self._goto(self._after_accept)

    def reject_literal(self) -> None:
        self._require_await()
        self._events.clear()
        self._reset_command()
        self._goto(_Mode.LINE)

    def discard_command(self) -> None:
        """Abandon the command in progress; yields CommandDiscarded(tag) once its bytes are skipped."""
        tag = self._tag
        pending = ev.CommandDiscarded(tag)
        self._events.clear()  # e.g. AppendMessageStart / ContinuationNeeded queued behind AppendStart
        if self._mode is _Mode.AWAIT_CONTINUATION:
            self._reset_command()
            self._goto(_Mode.LINE)
            self._events.append(pending)
        elif self._mode in (_Mode.APPEND_DATA, _Mode.LITERAL):
            self._skip_literal(self._remaining, pending)
        elif self._mode is _Mode.LINE and self._segments:
            # between a literal and the next line: skip the rest of this line
            self._skip_line(pending)
        else:
            raise UsageError("no command in progress")

    def begin_idle(self, tag: str) -> None:
        self._require_line("begin_idle")
        self._goto(_Mode.IDLE)
        self._wait_tag = tag

    def begin_auth_response(self, tag: str) -> None:
        self._require_line("begin_auth_response")
        self._goto(_Mode.AUTH_RESPONSE)
        self._wait_tag = tag

    def take_unprocessed(self) -> bytes:
        """Remove and return every byte not yet parsed (STARTTLS, COMPRESS)."""
        data = bytes(self._buf)
        self._buf.clear()
        self._scan = 0
        return data

    def next_event(self) -> ev.Event:
        while not self._events:
            mode = self._mode
            if mode is _Mode.LINE:
                progressed = self._step_line()
            elif mode is _Mode.LITERAL:
                progressed = self._step_literal()
            elif mode is _Mode.APPEND_DATA:
                progressed = self._step_append_data()
            elif mode is _Mode.DISCARD_LINE:
                progressed = self._step_discard_line()
            elif mode is _Mode.DISCARD_LITERAL:
                progressed = self._step_discard_literal()
            elif mode is _Mode.IDLE or mode is _Mode.AUTH_RESPONSE:
                progressed = self._step_wait_line()
            else:
                raise UsageError("a synchronizing literal waits for accept_literal() or reject_literal()")
            if not progressed:
                return ev.NEED_DATA
        return self._events.popleft()

    # --- helpers -------------------------------------------------------------

    def _goto(self, mode: _Mode) -> None:
        if mode not in _NEXT_MODES[self._mode]:
            raise AssertionError(f"parser bug: {self._mode.value} -> {mode.value}")
        self._mode = mode

    def _set_limits(self, authenticated: bool) -> None:
        self._authenticated = authenticated
        lim = self.limits
        self._line_limit = lim.line_after_auth if authenticated else lim.line_before_auth
        self._literal_limit = lim.literal_after_auth if authenticated else lim.literal_before_auth
        self._command_limit = lim.command_after_auth if authenticated else lim.command_before_auth

    def _line_limit_for(self, text: bytes | bytearray) -> int:
        """The line (and command) bound: larger for ID before login (RFC 2971's 30 x 1024 octets)."""
        if self._authenticated:
            return self._line_limit
        first = self._segments[0] if self._segments else bytes(text[:64])
        if _ID_COMMAND.match(first):  # never beyond what a logged-in client may send
            return max(self._line_limit, min(self.limits.id_before_auth, self.limits.line_after_auth))
        return self._line_limit

    def _reset_command(self) -> None:
        self._tag: str | None = None
        self._segments: list[bytes] = []
        self._literals: list[bytes] = []
        self._binary: list[bool] = []
        self._literal_buf = bytearray()
        self._text_bytes = 0  # command text so far (line limit)
        self._held = 0  # text + buffered literals (command limit)
        self._is_append = False
        self._append_mailbox: str | None = None
        self._append_started = False
        self._append_utf8_open = False  # a UTF8 ( literal8 ) message's ")" is still to come (RFC 6855 4)
        self._append_rest = False  # streamed messages came first, the rest is read whole (CATENATE)

    def _require_await(self) -> None:
        if self._mode is not _Mode.AWAIT_CONTINUATION:
            raise UsageError("no synchronizing literal is waiting")

    def _require_line(self, what: str) -> None:
        if self._mode is not _Mode.LINE or self._segments:
            raise UsageError(f"{what}() called in the middle of a command")

    def _take_line(self) -> bytes | None:
        """The next line without its line ending, or None if no LF is buffered."""
        idx = self._buf.find(b"\n", self._scan)
        if idx < 0:
            self._scan = len(self._buf)
            return None
        end = idx - 1 if idx and self._buf[idx - 1] == 0x0D else idx
        line = bytes(self._buf[:end])
        del self._buf[: idx + 1]
        self._scan = 0
        return line

    def _skip_line(self, pending: ev.Event | None) -> None:
        """Resync: skip to the end of the current line (following {n+} literals), then yield `pending`."""
        self._pending = pending
        self._tail = b""
        self._reset_command()
        self._goto(_Mode.DISCARD_LINE)

    def _skip_literal(self, size: int, pending: ev.Event) -> None:
        self._pending = pending
        self._tail = b""
        self._reset_command()
        self._remaining = size
        self._goto(_Mode.DISCARD_LITERAL)

    def _finish_skip(self) -> None:
        self._goto(_Mode.LINE)
        if self._pending is not None:
            self._events.append(self._pending)
            self._pending = None

    def _bad(self, text: str, reason: ev.BadReason = ev.BadReason.SYNTAX) -> ev.BadCommand:
        return ev.BadCommand(self._tag, text, reason)

    # --- LINE ----------------------------------------------------------------

    def _step_line(self) -> bool:
        if not self._buf:
            return False  # nothing to parse (the usual case once a command has been taken)
        if not self._segments and self._buf[0] in _GARBAGE_START:
            # No command starts with a control or 8-bit byte: say so now instead of waiting
            # for a line end that a TLS ClientHello sent to the plaintext port may never have.
            self._events.append(ev.BadCommand(None, "binary data is not an IMAP command", ev.BadReason.GARBAGE))
            self._skip_line(None)
            return True
        line = self._take_line()
        if line is not None and not self._segments and self._authenticated and self._repeats:
            sp = line.find(b" ")
            command = self._repeats.get((line[sp + 1 :], self.utf8_names)) if sp > 0 else None
            if command is not None and len(line) <= self._line_limit:
                tag = split_tag(line)
                if tag is not None:
                    self._events.append(ev.CommandReceived(tag, command))
                    return True
        if line is None:
            if self._text_bytes + len(self._buf) > self._line_limit_for(self._buf):
                if self._tag is None:
                    self._tag = split_tag(bytes(self._buf[:80]))
                bad = self._bad("command line too long", ev.BadReason.LINE_TOO_LONG)
                self._skip_line(bad)
                return True
            return False
        size = len(line)
        limit = self._line_limit if self._authenticated else self._line_limit_for(line)
        if self._text_bytes + size > limit:
            if self._tag is None:
                self._tag = split_tag(line[:80])
            self._after_skipped_line(line[-_TAIL:], self._bad("command line too long", ev.BadReason.LINE_TOO_LONG))
            return True
        if not self._segments:
            if not line:
                return True  # blank lines between commands are harmless; ignore them
            if not self._start_command(line):
                return True
        self._text_bytes += size
        self._held += size
        m = _LITERAL.search(line, size - 26 if size > 26 else 0) if line[-1:] == b"}" else None
        if m is None:
            self._complete(line)
        else:
            eight, digits, plus = m.group(1, 2, 3)
            self._literal_announced(line[: m.start()], int(digits), plus == b"", eight == b"~")
        return True

    def _start_command(self, line: bytes) -> bool:
        """Check tag and command name; False (and resync) when the line is not worth parsing."""
        self._tag = split_tag(line)
        if self._tag is None:
            self._after_skipped_line(line[-_TAIL:], ev.BadCommand(None, "invalid tag", ev.BadReason.BAD_TAG))
            return False
        name_start = len(self._tag) + 1
        name_end = line.find(b" ", name_start)
        name = line[name_start : len(line) if name_end < 0 else name_end].upper()
        brace = name.find(b"{")  # "a LOGIN{5}" is not a command name
        if brace >= 0:
            name = name[:brace]
        if name not in COMMAND_NAMES:
            self._after_skipped_line(line[-_TAIL:], self._bad("unknown command", ev.BadReason.UNKNOWN_COMMAND))
            return False
        self._is_append = name == b"APPEND" and self._stream_append and self._authenticated
        return True

    def _after_skipped_line(self, tail: bytes, pending: ev.Event) -> None:
        """A whole bad line was read: follow a {n+} at its end, then yield `pending`."""
        self._skip_line(pending)
        self._end_of_skipped_line(tail)

    def _complete(self, line: bytes) -> None:
        self._segments.append(line)
        if self._is_append and self._append_started:
            # end of a streamed APPEND: the final CRLF (after a UTF8 message's ")"), or CATENATE
            # messages without a literal
            tag = self._tag or ""
            rest = self._close_utf8(line)
            if rest == b"":
                self._events.append(ev.AppendEnd(tag))
            elif rest is not None and rest[:1] == b" ":
                self._append_rest_read([_REST_PREFIX + rest], [], [])
            else:
                self._events.append(self._bad("junk after APPEND message"))
            self._reset_command()
            return
        if self._append_rest:
            self._append_rest_read(self._segments, self._literals, self._binary)
            self._reset_command()
            return
        try:
            tag, command = parse_command(
                self._segments, self._literals, self._binary, utf8_names=self.utf8_names, tag=self._tag
            )
            self._events.append(ev.CommandReceived(tag, command))
            if len(self._segments) == 1 and self._authenticated and cacheable(line, len(tag)):
                if len(self._repeats) >= _MAX_REPEATS:
                    self._repeats.clear()
                self._repeats[line[len(tag) + 1 :], self.utf8_names] = command
        except CommandParseError as exc:
            reason = ev.BadReason.BAD_CHARSET if exc.bad_charset else ev.BadReason.SYNTAX
            self._events.append(ev.BadCommand(exc.tag, exc.message, reason, exc.forgets_saved))
        self._reset_command()

    def _literal_announced(self, text: bytes, size: int, sync: bool, binary: bool) -> None:
        tag = self._tag or ""
        if self._is_append:
            try:
                head = self._append_head(text)
            except _Catenate as catenate:
                # CATENATE (RFC 4469): the command (or, after streamed messages, its rest) is read
                # whole, TEXT literals within the literal and command limits; the session assembles.
                self._is_append = False
                if self._append_started:
                    self._append_rest = True
                    self._segments = []
                    text = _REST_PREFIX + catenate.rest
                head = None
            except ParseError as exc:
                self._refuse_literal(size, sync, self._bad(str(exc)))
                return
            if head is not None:
                self._stream_message(tag, head, size, sync, binary)
                return
        if size > self._literal_limit:
            self._refuse_literal(size, sync, ev.LiteralTooBig(self._tag, size, self._literal_limit, append=False))
            return
        command_limit = self._command_limit
        if not self._authenticated and self._segments and _ID_COMMAND.match(self._segments[0]):
            command_limit = max(command_limit, min(self.limits.id_before_auth, self.limits.command_after_auth))
        if self._held + size > command_limit:
            self._refuse_literal(size, sync, self._bad("command too long", ev.BadReason.COMMAND_TOO_LONG))
            return
        self._segments.append(text)
        self._binary.append(binary)
        self._held += size
        self._remaining = size
        self._literal_buf = bytearray()
        self._ask_or_read(tag, size, sync, _Mode.LITERAL)

    def _refuse_literal(self, size: int, sync: bool, event: ev.Event) -> None:
        if sync:
            # the client waits for "+": it sends nothing of this literal and drops the command
            self._events.append(event)
            self._reset_command()
        else:
            self._skip_literal(size, event)

    def _ask_or_read(self, tag: str, size: int, sync: bool, then: _Mode) -> None:
        if sync:
            self._events.append(ev.ContinuationNeeded(tag, size))
            self._after_accept = then
            self._goto(_Mode.AWAIT_CONTINUATION)
        else:
            self._goto(then)

    # --- APPEND streaming ----------------------------------------------------

    def _append_head(self, text: bytes) -> _AppendHead | None:
        """Flags and date before a message literal; None if this literal is the mailbox name."""
        rest = text
        key: tuple[bytes, bool] | None = None
        if self._append_mailbox is None and not self._segments and self._tag is not None:
            # All of the head is on this line (the mailbox name is no literal): seen before?
            key = (text[len(self._tag) + 1 :], self.utf8_names)
            known = self._append_heads.get(key)
            if known is not None:
                self._append_mailbox, flags, date = known
                return flags, date
        if self._append_mailbox is None:
            reader = Reader([*self._segments, text], self._literals, self._binary, utf8_names=self.utf8_names)
            reader.atom()  # tag (already validated)
            reader.sp()
            reader.atom()  # APPEND
            reader.sp()
            if reader.at_end():
                return None  # the literal being announced is the mailbox name
            mailbox = reader.mailbox()
            reader.sp()
        else:
            closed = self._close_utf8(text)
            if closed is None:
                raise ParseError('expected ")" after the UTF8 message')
            rest = closed
            reader = Reader([rest], utf8_names=self.utf8_names)
            reader.sp()
            mailbox = self._append_mailbox
        flags, date = _append_head(reader)
        word = reader.peek_word()
        if word == b"CATENATE":
            raise _Catenate(rest)
        if word == b"UTF8":  # UTF8 "(" literal8 ")" (RFC 6855 4): the message is the literal8
            reader.atom()
            reader.sp()
            reader.expect(0x28)
            self._append_utf8_open = True
        reader.end()
        self._append_mailbox = mailbox
        if key is not None and not self._append_utf8_open and len(text) <= _APPEND_HEAD_KEPT:
            if len(self._append_heads) >= _MAX_APPEND_HEADS:
                self._append_heads.clear()
            self._append_heads[key] = (mailbox, flags, date)
        return flags, date

    def _append_rest_read(self, segments: list[bytes], literals: list[bytes], binary: list[bool]) -> None:
        """The messages after a streamed APPEND's streamed ones, read whole: AppendRest + AppendEnd."""
        tag = self._tag or ""
        try:
            _, command = parse_command(segments, literals, binary, utf8_names=self.utf8_names)
        except CommandParseError as exc:
            self._events.append(ev.BadCommand(tag, exc.message))
            return
        assert isinstance(command, c.Append)
        self._events.append(ev.AppendRest(tag, command.messages))
        self._events.append(ev.AppendEnd(tag))

    def _close_utf8(self, text: bytes) -> bytes | None:
        """`text` after the ")" that closes a UTF8 message, or as it is; None if that ")" is missing."""
        if not self._append_utf8_open:
            return text
        if text[:1] != b")":
            return None
        self._append_utf8_open = False
        return text[1:]

    def _stream_message(self, tag: str, head: _AppendHead, size: int, sync: bool, binary: bool) -> None:
        if self._append_utf8_open and not binary:
            self._refuse_literal(size, sync, self._bad("UTF8 APPEND data is a literal8 (~{n})"))
            return
        if size > self.limits.append_limit:
            self._refuse_literal(size, sync, ev.LiteralTooBig(tag, size, self.limits.append_limit, append=True))
            return
        flags, date = head
        if not self._append_started:
            self._append_started = True
            self._events.append(ev.AppendStart(tag, self._append_mailbox or ""))
        self._events.append(ev.AppendMessageStart(tag, flags, date, size, binary))
        # the message text is gone; keep only a marker so _complete knows a message was seen
        self._segments = [b""]
        self._literals = []
        self._binary = []
        self._remaining = size
        self._ask_or_read(tag, size, sync, _Mode.APPEND_DATA)

    def _step_append_data(self) -> bool:
        tag = self._tag or ""
        if self._remaining == 0:
            self._events.append(ev.AppendMessageEnd(tag))
            self._goto(_Mode.LINE)
            return True
        if not self._buf:
            return False
        n = min(len(self._buf), self._remaining, self.limits.append_chunk)
        chunk = bytes(self._buf[:n])
        del self._buf[:n]
        self._scan = 0
        self._remaining -= n
        self._events.append(ev.AppendChunk(tag, chunk))
        if self._remaining == 0:
            self._events.append(ev.AppendMessageEnd(tag))
            self._goto(_Mode.LINE)
        return True

    # --- LITERAL ---------------------------------------------------------------

    def _step_literal(self) -> bool:
        if self._remaining and not self._buf:
            return False
        n = min(len(self._buf), self._remaining)
        self._literal_buf += self._buf[:n]
        del self._buf[:n]
        self._scan = 0
        self._remaining -= n
        if self._remaining == 0:
            self._literals.append(bytes(self._literal_buf))
            self._literal_buf = bytearray()
            self._goto(_Mode.LINE)
        return True

    # --- resync ----------------------------------------------------------------

    def _step_discard_line(self) -> bool:
        idx = self._buf.find(b"\n")
        if idx < 0:
            if not self._buf:
                return False
            self._tail = (self._tail + bytes(self._buf[-_TAIL:]))[-_TAIL:]
            self._buf.clear()
            self._scan = 0
            return False
        tail = (self._tail + bytes(self._buf[max(0, idx - _TAIL) : idx])).removesuffix(b"\r")[-_TAIL:]
        del self._buf[: idx + 1]
        self._scan = 0
        self._end_of_skipped_line(tail)
        return True

    def _end_of_skipped_line(self, tail: bytes) -> None:
        self._tail = b""
        m = _LITERAL.search(tail)
        if m is not None and m.group(3) == b"+":
            # a non-synchronizing literal follows whatever we think of the line
            self._remaining = int(m.group(2))
            self._goto(_Mode.DISCARD_LITERAL)
        else:
            # end of command (after {n} the client waits for "+" and gets our answer instead)
            self._finish_skip()

    def _step_discard_literal(self) -> bool:
        if self._remaining and not self._buf:
            return False
        n = min(len(self._buf), self._remaining)
        del self._buf[:n]
        self._scan = 0
        self._remaining -= n
        if self._remaining == 0:
            self._tail = b""
            self._goto(_Mode.DISCARD_LINE)
        return True

    # --- IDLE / AUTHENTICATE -------------------------------------------------

    def _step_wait_line(self) -> bool:
        tag = self._wait_tag
        line = self._take_line()
        if line is None:
            if len(self._buf) > self._line_limit:
                self._goto(_Mode.LINE)
                self._skip_line(ev.BadCommand(tag, "line too long", ev.BadReason.LINE_TOO_LONG))
                return True
            return False
        idle = self._mode is _Mode.IDLE
        self._goto(_Mode.LINE)
        if idle:
            if line.upper() == b"DONE":
                self._events.append(ev.IdleDone(tag))
            else:
                self._events.append(ev.BadCommand(tag, "expected DONE", ev.BadReason.EXPECTED_DONE))
        elif line == b"*":
            self._events.append(ev.AuthResponse(tag, None))
        else:
            try:
                self._events.append(ev.AuthResponse(tag, decode_base64(line)))
            except ParseError:
                self._events.append(ev.BadCommand(tag, "invalid base64", ev.BadReason.BAD_BASE64))
        return True
