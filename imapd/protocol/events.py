"""What the parser yields from `next_event()` (see parser.py for the protocol)."""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass, field
from typing import Final

from imapd.protocol.commands import AppendMessage, Command


@dataclass(frozen=True, slots=True)
class NeedData:
    """Nothing complete is buffered: read from the socket and call receive_data()."""


NEED_DATA: Final = NeedData()


@dataclass(frozen=True, slots=True)
class CommandReceived:
    tag: str
    command: Command


@dataclass(frozen=True, slots=True)
class ContinuationNeeded:
    """A synchronizing literal {size} was announced.

    Send "+ ..." then accept_literal(), or answer the tag and reject_literal().
    """

    tag: str
    size: int


@dataclass(frozen=True, slots=True)
class LiteralTooBig:
    """A literal over its limit: answer `tag` NO [TOOBIG]. The data was never buffered.

    For a synchronizing literal the event comes at once (the client sends
    nothing more of the command); for a non-synchronizing one after the
    announced bytes and the rest of the command were skipped.
    """

    tag: str | None
    size: int
    limit: int
    append: bool


class BadReason(enum.Enum):
    SYNTAX = "syntax"
    BAD_TAG = "bad-tag"
    UNKNOWN_COMMAND = "unknown-command"
    LINE_TOO_LONG = "line-too-long"  # answer BAD [TOOBIG]
    COMMAND_TOO_LONG = "command-too-long"  # lines + literals over the total limit
    BAD_CHARSET = "bad-charset"  # SEARCH CHARSET we do not know: NO [BADCHARSET (UTF-8 US-ASCII)]
    EXPECTED_DONE = "expected-done"  # something other than DONE during IDLE
    BAD_BASE64 = "bad-base64"  # an AUTHENTICATE response that is not base64
    GARBAGE = "garbage"  # binary data where a command should start (TLS on the plaintext port?): BYE


@dataclass(frozen=True, slots=True)
class BadCommand:
    """A command that could not be parsed: tagged BAD when `tag` is known, else untagged BAD.

    `text` is safe to send to the client and to log (it never quotes the input).
    """

    tag: str | None
    text: str
    reason: BadReason = BadReason.SYNTAX
    # A NO [BADCHARSET] to a RETURN (SAVE): the saved search result is now empty (RFC 5182 2.1).
    forgets_saved: bool = False


@dataclass(frozen=True, slots=True)
class AppendStart:
    """An APPEND to `mailbox` begins; messages follow (several for MULTIAPPEND)."""

    tag: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class AppendMessageStart:
    """One message of the APPEND: `size` bytes follow as AppendChunk events."""

    tag: str
    flags: tuple[str, ...]
    internal_date: datetime.datetime | None
    size: int
    binary: bool = False


@dataclass(frozen=True, slots=True)
class AppendChunk:
    tag: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class AppendMessageEnd:
    tag: str


@dataclass(frozen=True, slots=True)
class AppendRest:
    """The rest of a streamed APPEND, read whole because a CATENATE message (RFC 4469) follows the
    streamed ones: these messages come after them; AppendEnd follows."""

    tag: str
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True, slots=True)
class AppendEnd:
    """The APPEND command is complete: commit every message and answer `tag`."""

    tag: str


@dataclass(frozen=True, slots=True)
class CommandDiscarded:
    """The command abandoned with discard_command() has been skipped to its end."""

    tag: str | None


@dataclass(frozen=True, slots=True)
class IdleDone:
    """The client ended IDLE with DONE: answer the IDLE command's tag OK."""

    tag: str


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """A line of an AUTHENTICATE exchange: decoded base64, or None when the client sent "*" (cancel)."""

    tag: str
    data: bytes | None = field(repr=False)


Event = (
    NeedData
    | CommandReceived
    | ContinuationNeeded
    | LiteralTooBig
    | BadCommand
    | AppendStart
    | AppendMessageStart
    | AppendChunk
    | AppendMessageEnd
    | AppendRest
    | AppendEnd
    | CommandDiscarded
    | IdleDone
    | AuthResponse
)
