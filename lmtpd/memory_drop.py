"""An in-memory MailDrop for tests of the server without a store process.

It models what the server relies on: address resolution with plus-address
stripping, per-user quotas, a size limit, and the writer epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lmtpd.delivery import DeliveryResult, MessageSource, Outcome, Recipient, Resolution


@dataclass
class MemoryMailbox:
    messages: list[bytes] = field(default_factory=list)

    @property
    def usage(self) -> int:
        return sum(len(m) for m in self.messages)


class MemoryMailDrop:
    def __init__(self, *, epoch: int = 1, max_message_size: int = 20 * 1024 * 1024) -> None:
        self.addresses: dict[str, str] = {}
        self.inboxes: dict[str, MemoryMailbox] = {}
        self.quotas: dict[str, int] = {}
        self.store_epoch = epoch
        self.client_epoch = epoch
        self.available = True
        self.max_message_size = max_message_size

    def add_user(self, user: str, *addresses: str, quota: int = 0) -> None:
        self.inboxes[user] = MemoryMailbox()
        self.quotas[user] = quota
        for address in addresses:
            self.addresses[address.lower()] = user

    def session(self) -> MemorySession:
        return MemorySession(self)


class MemorySession:
    def __init__(self, drop: MemoryMailDrop) -> None:
        self._drop = drop

    async def resolve(self, address: str) -> Resolution:
        if not self._drop.available:
            return Resolution(Outcome.UNAVAILABLE)
        if "@" not in address:
            return Resolution(Outcome.BAD_ADDRESS)
        local, _, domain = address.lower().rpartition("@")
        user = self._drop.addresses.get(f"{local.partition('+')[0]}@{domain}")
        return Resolution(Outcome.DELIVERED, user=user) if user else Resolution(Outcome.NO_SUCH_USER)

    async def deliver(
        self, recipients: Sequence[Recipient], prefixes: Sequence[bytes], body: MessageSource
    ) -> list[DeliveryResult]:
        results = []
        for recipient, prefix in zip(recipients, prefixes, strict=True):
            results.append(self._append(recipient.user, prefix + b"".join(body.pieces(4096))))
        return results

    def _append(self, user: str, message: bytes) -> DeliveryResult:
        drop = self._drop
        if not drop.available:
            return DeliveryResult(Outcome.UNAVAILABLE)
        if drop.client_epoch != drop.store_epoch:
            return DeliveryResult(Outcome.FENCED)
        if len(message) > drop.max_message_size:
            return DeliveryResult(Outcome.TOO_BIG)
        inbox = drop.inboxes[user]
        quota = drop.quotas[user]
        if quota and inbox.usage + len(message) > quota:
            return DeliveryResult(Outcome.OVER_QUOTA)
        inbox.messages.append(message)
        return DeliveryResult(Outcome.DELIVERED, uid=len(inbox.messages))

    async def aclose(self) -> None:
        return None
