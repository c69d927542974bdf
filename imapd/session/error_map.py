"""The one place where store failures become IMAP responses (RFC 5530 codes)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from imapd.errors import StoreError, StoreErrorKind


class Context(enum.Enum):
    """What the command was doing: the same store error reads differently."""

    GENERAL = "general"
    APPEND_OR_COPY = "append_or_copy"  # NOT_FOUND -> [TRYCREATE] (RFC 3501 6.3.11)
    CREATE = "create"
    LOGIN = "login"


@dataclass(frozen=True, slots=True)
class ErrorReply:
    status: bytes  # b"NO" or b"BAD"
    text: bytes  # "[CODE] human text"
    # The writer is fenced: every connection must be closed with BYE.
    fenced: bool = False


def reply_for(exc: StoreError, context: Context = Context.GENERAL) -> ErrorReply:
    kind = exc.kind
    if kind is StoreErrorKind.NOT_FOUND:
        if context is Context.APPEND_OR_COPY:
            return ErrorReply(b"NO", b"[TRYCREATE] Mailbox does not exist")
        return ErrorReply(b"NO", b"[NONEXISTENT] Mailbox does not exist")
    if kind is StoreErrorKind.ALREADY_EXISTS:
        return ErrorReply(b"NO", b"[ALREADYEXISTS] Mailbox already exists")
    if kind is StoreErrorKind.OVER_QUOTA:
        return ErrorReply(b"NO", b"[OVERQUOTA] Quota exceeded")
    if kind is StoreErrorKind.LIMIT:
        return ErrorReply(b"NO", b"[LIMIT] " + _safe(exc.message.removeprefix("limit: ")))
    if kind is StoreErrorKind.TOO_BIG:
        return ErrorReply(b"NO", b"[TOOBIG] Message too big")
    if kind is StoreErrorKind.STORAGE_FULL:
        return ErrorReply(b"NO", b"[UNAVAILABLE] Mail storage is full, nothing was saved; try again later")
    if kind is StoreErrorKind.INVALID:
        if context is Context.CREATE:
            return ErrorReply(b"NO", b"[CANNOT] Invalid mailbox name")
        return ErrorReply(b"NO", b"[CANNOT] " + _safe(exc.message))
    if kind is StoreErrorKind.PRECONDITION:
        return ErrorReply(b"NO", b"[CANNOT] " + _safe(exc.message))
    if kind is StoreErrorKind.FENCED:
        return ErrorReply(b"NO", b"[UNAVAILABLE] This server is no longer the writer", fenced=True)
    if kind is StoreErrorKind.UNAVAILABLE:
        return ErrorReply(b"NO", b"[UNAVAILABLE] Mail store temporarily unavailable, try again")
    if kind is StoreErrorKind.UNAUTHENTICATED:
        return ErrorReply(b"NO", b"[AUTHENTICATIONFAILED] Authentication failed")
    return ErrorReply(b"NO", b"[SERVERBUG] Internal error")


def _safe(message: str) -> bytes:
    """Store text in a response line: printable ASCII only, bounded."""
    return "".join(c if " " <= c <= "~" else "?" for c in message[:200]).encode("ascii")
