"""What lmtpd needs from the store, as a narrow interface, and its outcomes.

The server talks to the store only through `MailDrop`; the gRPC
implementation lives in lmtpd.store_gateway, an in-memory one for tests in
lmtpd.memory_drop. Outcomes are a closed enum so that the mapping to LMTP
replies (lmtpd.replies.for_outcome) is exhaustive and lives in one place.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mailha_api import settings_pb2


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    NO_SUCH_USER = "no such user"
    BAD_ADDRESS = "bad address"
    OVER_QUOTA = "over quota"
    TOO_BIG = "too big"
    FENCED = "fenced"  # this lmtpd's writer epoch is no longer the store's
    UNAVAILABLE = "store unavailable"  # quiesced, restarting, unreachable
    STORAGE_FULL = "storage full"  # the store's disk is full: temporary, the MTA retries
    # The recipient's settings changed after lmtpd decided on them: nothing stored, temporary.
    SETTINGS_CHANGED = "settings changed"
    FAILED = "failed"  # anything else (an I/O error, a bug): temporary, the MTA retries
    REFUSED_BY_RECIPIENT = "refused by the recipient's settings"  # a blocked sender domain (550)


@dataclass(frozen=True)
class Resolution:
    outcome: Outcome
    user: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Recipient:
    address: str  # as given in RCPT TO (goes into Delivered-To)
    user: str  # the store user it resolved to
    mailbox: str = "INBOX"  # where the append goes (the recipient's settings may say Junk)
    # The delivery-log line of a successful append: the store writes it in the append's own
    # transaction (AppendHeader.delivery_log). None: nothing to log with the append.
    log: settings_pb2.DeliveryRecord | None = field(default=None, compare=False)
    # The recipient's settings revision the mailbox was chosen by (b"": none): the store refuses
    # the append if the settings changed since (AppendHeader.settings_revision).
    settings_revision: bytes = b""


@dataclass(frozen=True)
class DeliveryResult:
    outcome: Outcome
    uid: int = 0
    detail: str = ""


class MessageSource(Protocol):
    """A spooled message body that can be read several times, in pieces."""

    @property
    def size(self) -> int: ...

    def pieces(self, piece_size: int) -> Iterator[bytes]: ...


class MailDropSession(Protocol):
    """One LMTP connection's view of the store."""

    async def resolve(self, address: str) -> Resolution: ...

    async def deliver(
        self, recipients: Sequence[Recipient], prefixes: Sequence[bytes], body: MessageSource
    ) -> list[DeliveryResult]:
        """Append prefix[i] + body to recipients[i]'s INBOX; results in order.

        Returns only when every successful append is durable (fsynced).
        """
        ...

    async def aclose(self) -> None: ...


class MailDrop(Protocol):
    def session(self) -> MailDropSession: ...
