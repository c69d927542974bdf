"""Exceptions of mailparse (one root: `MessageError`).

Broken messages never raise: these signal misuse by the caller, such as
rendering an item whose data the session did not fetch (a server bug, so
the session answers NO/BAD with a server-side error, not the client's fault).
"""

from __future__ import annotations


class MessageError(Exception):
    """Root of mailparse's exceptions."""


class MissingMessageData(MessageError):
    """An item needs the header or body, but the view was built without it."""


class UnknownTransferEncoding(MessageError):
    """BINARY of a part whose Content-Transfer-Encoding we cannot undo: NO [UNKNOWN-CTE] (RFC 3516 4.1)."""
