"""Sans-IO LMTP server core (RFC 2033): bytes in, typed events out.

No sockets, no trio, no logging. The server loop feeds received bytes with
`receive_data`, pulls events with `next_event` until NEED_DATA, and answers
each command with `send(reply)`, which returns the bytes to write and moves
the state machine. Like h11, the reply drives the transition: the core does
not know whether a recipient exists, only whether the server said 250.

Commands are answered strictly in order; `next_event` refuses to parse the
next pipelined command until the previous one has its reply.

State diagram (TRANSITIONS below, on a positive reply):

    GREETED --LHLO--> READY --MAIL--> MAIL --RCPT--> RCPT --DATA(354)--> DATA
                        ^                              |  RCPT             |
                        |                              +---+           content end
                        +------------- all recipients answered --- REPLYING
    RSET: READY from every state after LHLO; QUIT: CLOSED from everywhere.
"""

from __future__ import annotations

import enum

from lmtpd import replies
from lmtpd.commands import parse_command
from lmtpd.data_decoder import DataDecoder
from lmtpd.errors import LmtpdError
from lmtpd.events import (
    NEED_DATA,
    Command,
    ConnectionClosed,
    DataChunk,
    DataEnd,
    Event,
    NeedData,
    Rejected,
    Verb,
)
from lmtpd.replies import Reply

DEFAULT_MAX_LINE = 2048  # RFC 5321 allows 512 + extension parameters


class LmtpProtocolError(LmtpdError):
    """The server used the core out of order (a bug in the caller)."""


class State(enum.Enum):
    GREETED = "greeted"  # 220 sent, waiting for LHLO
    READY = "ready"  # after LHLO, no transaction open
    MAIL = "mail"  # sender accepted, no recipient yet
    RCPT = "rcpt"  # at least one recipient accepted
    DATA = "data"  # reading message content
    REPLYING = "replying"  # content read; one reply per recipient owed
    CLOSED = "closed"


class Internal(enum.Enum):
    """Triggers that are not client commands."""

    CONTENT_END = "content end"
    ALL_REPLIED = "all recipients answered"


Trigger = Verb | Internal

_SESSION = (State.READY, State.MAIL, State.RCPT)
TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (State.GREETED, Verb.LHLO): State.READY,
    **{(s, Verb.LHLO): State.READY for s in _SESSION},  # a second LHLO resets like RSET
    (State.READY, Verb.MAIL): State.MAIL,
    (State.MAIL, Verb.RCPT): State.RCPT,
    (State.RCPT, Verb.RCPT): State.RCPT,
    (State.RCPT, Verb.DATA): State.DATA,
    (State.DATA, Internal.CONTENT_END): State.REPLYING,
    (State.REPLYING, Internal.ALL_REPLIED): State.READY,
    (State.GREETED, Verb.RSET): State.GREETED,
    **{(s, Verb.RSET): State.READY for s in _SESSION},
    **{(s, v): s for s in (State.GREETED, *_SESSION) for v in (Verb.NOOP, Verb.VRFY)},
    **{(s, Verb.QUIT): State.CLOSED for s in (State.GREETED, *_SESSION)},
}

# Why a command is out of sequence, for a more helpful 503.
_SEQUENCE_REPLY: dict[tuple[State, Verb], Reply] = {
    (State.GREETED, Verb.MAIL): replies.NEED_LHLO,
    (State.MAIL, Verb.MAIL): replies.NESTED_MAIL,
    (State.RCPT, Verb.MAIL): replies.NESTED_MAIL,
    (State.MAIL, Verb.DATA): replies.NO_VALID_RECIPIENTS,
}


class _Framing(enum.Enum):
    LINES = "lines"  # reading command lines
    DISCARD_LINE = "discard"  # an overlong command line: skip to its end, then refuse it


class LmtpConnection:
    def __init__(self, *, max_message_size: int, max_line: int = DEFAULT_MAX_LINE) -> None:
        self.max_message_size = max_message_size
        self.max_line = max_line
        self.state = State.GREETED
        self.recipients = 0  # accepted in the current transaction
        self._buffer = b""
        self._eof = False
        self._framing = _Framing.LINES
        # The command (or refusal) awaiting its reply, if any.
        self._pending: Command | Rejected | None = None
        self._decoder: DataDecoder | None = None
        self._content_size = 0
        self._owed_replies = 0

    @property
    def buffered_bytes(self) -> int:
        """Received bytes not yet turned into events (bounded by max_line in command mode)."""
        return len(self._buffer)

    # ---- input ---------------------------------------------------------------
    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes from the client; b"" means the client closed."""
        if data:
            self._buffer += data
        else:
            self._eof = True

    def next_event(self) -> Event | NeedData:
        if self._pending is not None:
            raise LmtpProtocolError("previous command has not been answered")
        if self.state is State.REPLYING:
            raise LmtpProtocolError("recipient replies are still owed")
        if self.state is State.DATA:
            return self._next_content_event()
        return self._next_command_event()

    def _next_command_event(self) -> Event | NeedData:
        newline = self._buffer.find(b"\n")
        if newline < 0:
            if len(self._buffer) > self.max_line:
                self._buffer = b""
                self._framing = _Framing.DISCARD_LINE
            if self._eof:
                return ConnectionClosed()
            return NEED_DATA
        line, self._buffer = self._buffer[:newline], self._buffer[newline + 1 :]
        if self._framing is _Framing.DISCARD_LINE or len(line) > self.max_line:
            self._framing = _Framing.LINES
            return self._hold(Rejected(replies.LINE_TOO_LONG))
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            # Answered like any unknown command: a client waiting for a reply gets one.
            return self._hold(Rejected(replies.UNKNOWN_COMMAND))
        parsed = parse_command(line)
        if isinstance(parsed, Rejected):
            return self._hold(parsed)
        if (self.state, parsed.verb) not in TRANSITIONS:
            seq = _SEQUENCE_REPLY.get((self.state, parsed.verb), replies.BAD_SEQUENCE)
            return self._hold(Rejected(seq))
        return self._hold(parsed)

    def _next_content_event(self) -> Event | NeedData:
        if self._decoder is None:  # the dot line has been seen; the last chunk went out
            return self._finish_content()
        if not self._buffer:
            return ConnectionClosed() if self._eof else NEED_DATA
        decoded = self._decoder.feed(self._buffer)
        self._buffer = b""
        content = self._within_limit(decoded.content)
        if decoded.rest is not None:
            self._buffer = decoded.rest  # pipelined commands after the dot
            self._decoder = None
            if not content:
                return self._finish_content()
        if content:
            return DataChunk(content)
        return ConnectionClosed() if self._eof else NEED_DATA

    def _within_limit(self, content: bytes) -> bytes:
        """Count content; past max_message_size keep reading to the dot but store nothing."""
        self._content_size += len(content)
        return content if self._content_size <= self.max_message_size else b""

    def _finish_content(self) -> DataEnd:
        self._transition(Internal.CONTENT_END)
        self._owed_replies = self.recipients
        return DataEnd(self._content_size, self._content_size > self.max_message_size)

    def _hold(self, event: Command | Rejected) -> Command | Rejected:
        self._pending = event
        return event

    # ---- output --------------------------------------------------------------
    def send(self, reply: Reply) -> bytes:
        """Bytes of `reply`, answering the pending command or one recipient."""
        if self.state is State.REPLYING:
            self._owed_replies -= 1
            if self._owed_replies == 0:
                self._transition(Internal.ALL_REPLIED)
                self.recipients = 0
            return reply.to_bytes()
        pending = self._pending
        if pending is None:
            raise LmtpProtocolError("no command awaits a reply")
        self._pending = None
        if isinstance(pending, Rejected) or not reply.positive:
            return reply.to_bytes()
        self._transition(pending.verb)
        if pending.verb is Verb.RCPT:
            self.recipients += 1
        elif self.state in (State.GREETED, State.READY):
            self.recipients = 0
        if self.state is State.DATA:
            self._decoder = DataDecoder()
            self._content_size = 0
        return reply.to_bytes()

    def _transition(self, trigger: Trigger) -> None:
        try:
            self.state = TRANSITIONS[(self.state, trigger)]
        except KeyError:
            raise LmtpProtocolError(f"no transition from {self.state.value} on {trigger.value}") from None
