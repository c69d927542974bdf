"""The store's one exception root and its kinds.

Each kind names the gRPC status it becomes; the mapping itself happens in one
place, `store.servicer._abort_with`. Messages are written for a person: they
say what was wrong and, where it helps, what to do instead.
"""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    UNAVAILABLE = "UNAVAILABLE"
    ABORTED = "ABORTED"
    INTERNAL = "INTERNAL"


class StoreError(Exception):
    """Root of every error the store reports to a caller."""

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Aborted(StoreError):
    """What the caller decided the write on changed meanwhile (e.g. the recipient's settings):
    nothing was written; read again and decide again."""

    kind = ErrorKind.ABORTED


class InvalidArgument(StoreError):
    kind = ErrorKind.INVALID_ARGUMENT


class NotFound(StoreError):
    kind = ErrorKind.NOT_FOUND


class AlreadyExists(StoreError):
    kind = ErrorKind.ALREADY_EXISTS


class ResourceExhausted(StoreError):
    """Over quota ("quota: ..."), message too big ("size: "), disk full ("storage: "), a bound ("limit: ")."""

    kind = ErrorKind.RESOURCE_EXHAUSTED


class StorageFull(ResourceExhausted):
    """The store's volume is full. Temporary for callers: retry later (LMTP 452 4.3.1)."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"storage: the mail store's disk is full ({detail}); nothing was written, retry later")


class LimitExceeded(ResourceExhausted):
    """A fixed bound (keyword length, keywords per mailbox) would be passed; IMAP's [LIMIT]."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"limit: {detail}")


class FailedPrecondition(StoreError):
    """Fenced, epoch not established, \\Noselect misuse, ..."""

    kind = ErrorKind.FAILED_PRECONDITION


class Unauthenticated(StoreError):
    kind = ErrorKind.UNAUTHENTICATED


class Unavailable(StoreError):
    """Writes suspended (SetWritable false) or the store is stopping."""

    kind = ErrorKind.UNAVAILABLE


class Internal(StoreError):
    kind = ErrorKind.INTERNAL
