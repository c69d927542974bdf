"""Exceptions of the imapd server side (one root: `ImapdError`).

Store failures arrive as `StoreError` with a `StoreErrorKind`, whatever the
store-client implementation (fake or gRPC); `imapd.session.error_map` is the
one place that turns them into IMAP responses.
"""

from __future__ import annotations

import enum


class ImapdError(Exception):
    """Root of every exception raised by imapd's server side."""


class StoreErrorKind(enum.Enum):
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    OVER_QUOTA = "over_quota"
    TOO_BIG = "too_big"
    # A fixed bound (keyword length, keywords per mailbox): IMAP's [LIMIT].
    LIMIT = "limit"
    # The store's disk is full: temporary, nothing was written.
    STORAGE_FULL = "storage_full"
    INVALID = "invalid"
    # UNCHANGEDSINCE misuse, mailbox with children, epoch not established ...
    PRECONDITION = "precondition"
    # A newer writer exists: this imapd must stop writing for good.
    FENCED = "fenced"
    UNAVAILABLE = "unavailable"
    # A Watch stream fell more events behind than the store queues for it: reopen it
    # with since_modseq (the store catches up from its database).
    FELL_BEHIND = "fell_behind"
    UNAUTHENTICATED = "unauthenticated"
    INTERNAL = "internal"


class StoreError(ImapdError):
    def __init__(self, kind: StoreErrorKind, message: str) -> None:
        super().__init__(f"{kind.value}: {message}")
        self.kind = kind
        self.message = message


class TlsSetupError(ImapdError):
    """Certificate or key missing or unreadable."""
