"""Typed events produced by the sans-IO LMTP core (lmtpd.protocol)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from lmtpd.replies import Reply


class Verb(enum.Enum):
    LHLO = "LHLO"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"
    RSET = "RSET"
    NOOP = "NOOP"
    QUIT = "QUIT"
    VRFY = "VRFY"


class BodyType(enum.Enum):
    SEVEN_BIT = "7BIT"
    EIGHT_BIT_MIME = "8BITMIME"


@dataclass(frozen=True)
class Lhlo:
    domain: str
    verb: Verb = Verb.LHLO


@dataclass(frozen=True)
class MailFrom:
    reverse_path: str  # "" for the null sender <>
    size: int | None = None  # SIZE= as announced by the client
    body: BodyType = BodyType.SEVEN_BIT
    verb: Verb = Verb.MAIL


@dataclass(frozen=True)
class RcptTo:
    forward_path: str
    verb: Verb = Verb.RCPT


@dataclass(frozen=True)
class Data:
    verb: Verb = Verb.DATA


@dataclass(frozen=True)
class Rset:
    verb: Verb = Verb.RSET


@dataclass(frozen=True)
class Noop:
    verb: Verb = Verb.NOOP


@dataclass(frozen=True)
class Quit:
    verb: Verb = Verb.QUIT


@dataclass(frozen=True)
class Vrfy:
    argument: str
    verb: Verb = Verb.VRFY


Command = Lhlo | MailFrom | RcptTo | Data | Rset | Noop | Quit | Vrfy


@dataclass(frozen=True)
class DataChunk:
    """A piece of message content, already unstuffed and CRLF-normalised."""

    data: bytes


@dataclass(frozen=True)
class DataEnd:
    """The content is complete. `size` counts message bytes as stored.

    too_big: the content exceeded max_message_size; the chunks past the
    limit were discarded, and every recipient must get a 552 5.3.4.
    """

    size: int
    too_big: bool


@dataclass(frozen=True)
class Rejected:
    """A command the core refuses by itself (syntax, sequence, line length).

    The server sends `reply` back unchanged; no state changes.
    """

    reply: Reply


@dataclass(frozen=True)
class ConnectionClosed:
    """The client closed its side."""


class NeedData(enum.Enum):
    """Sentinel: feed more bytes with receive_data()."""

    NEED_DATA = "need data"


NEED_DATA = NeedData.NEED_DATA

Event = Command | DataChunk | DataEnd | Rejected | ConnectionClosed
