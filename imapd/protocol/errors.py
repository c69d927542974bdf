"""Exceptions of the sans-IO protocol core (one root: `ProtocolError`).

The parser never lets these escape `next_event()`: it turns them into
`ProtocolErrorEvent` / `LiteralTooBig` events. They escape only from helpers
called directly (mUTF-7, sequence sets) and on API misuse (`UsageError`).
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Root of the protocol core's exceptions."""


class ParseError(ProtocolError):
    """Input that does not follow the IMAP grammar (answered with BAD)."""


class MUtf7Error(ParseError):
    """A mailbox name that is not canonical modified UTF-7."""


class UsageError(ProtocolError):
    """The caller used the parser out of order (a bug in the server, not in the client)."""
