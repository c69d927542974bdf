"""A MailDrop that applies each recipient's own settings around another MailDrop.

Per recipient it reads the UserSettings from the store (Settings service),
decides with lmtpd.personal_rules (blocked sender domain -> Junk or refused,
spam header -> Junk / INBOX / discard, forwarding with or without a copy),
forwards over SMTP to the configured relay, hands the appends to the inner
drop with the chosen folder, and records every outcome in the store's
delivery log.

Forwarding goes first: if the relay refuses or is unreachable, that
recipient gets a temporary failure and nothing is stored, so the MTA retries
the whole thing and no message is lost or half-handled. A stored message's
log line travels with its append (Recipient.log -> AppendHeader.delivery_log)
and is written in the append's own store transaction: a crash keeps both or
neither, and a retried (duplicate) delivery logs nothing twice. The append
also carries the settings' revision it was decided on; if the user changed
their settings in between, the store writes nothing (ABORTED) and that
recipient gets 451, so the MTA's retry is decided on the new settings.

Settings are cached per user (bounded, least recently used out): a delivery
into INBOX or a folder decided on cached settings carries their revision, so
the store refuses it if they are stale; lmtpd then forgets them, reads them
afresh and delivers that recipient once more at once. Anything the store does
not check (refuse, discard, forward) is decided on settings read afresh.
Outcomes
that store nothing (refused, discarded, forwarded only, failed appends) are
written afterwards with RecordDeliveries; a failure to write those is
logged and does not change the reply.
"""

from __future__ import annotations

import logging
import smtplib
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
import trio

from lmtpd import replies
from lmtpd.delivery import DeliveryResult, MailDrop, MailDropSession, MessageSource, Outcome, Recipient, Resolution
from lmtpd.personal_rules import (
    HEAD_LIMIT,
    Action,
    Disposition,
    MessageFacts,
    SpamHeader,
    decide,
    forward_header,
    message_facts,
)
from mailha_api import settings_pb2, settings_pb2_grpc
from store.channel import PIECE, open_channel

log = logging.getLogger("mailha.lmtpd.settings")
_SETTINGS_TIMEOUT = 10.0
_SMTP_TIMEOUT = 60.0
_CACHED_USERS = 10_000  # a few hundred bytes each


@dataclass(frozen=True)
class PersonalOptions:
    relay: tuple[str, int] | None = None  # forwarding relay (host, port); None = forwarding off
    spam_header: SpamHeader = field(default_factory=SpamHeader)
    quota_tempfail: bool = False  # only for the reply code written to the delivery log


def sender_of(prefix: bytes) -> str:
    """The envelope sender from the Return-Path line lmtpd.server prepends."""
    first = prefix.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    if first.startswith("Return-Path: <") and first.endswith(">"):
        return first[len("Return-Path: <") : -1]
    return ""


def _head(body: MessageSource) -> bytes:
    out = bytearray()
    for piece in body.pieces(16 * 1024):
        out += piece
        if len(out) >= HEAD_LIMIT or b"\r\n\r\n" in out:
            break
    return bytes(out)


def _forward(relay: tuple[str, int], sender: str, to: str, body: MessageSource, trace: bytes) -> None:
    data = trace + b"".join(body.pieces(PIECE))
    with smtplib.SMTP(relay[0], relay[1], timeout=_SMTP_TIMEOUT) as smtp:
        smtp.sendmail(sender, [to], data)


class SettingsSession:
    def __init__(self, drop: SettingsMailDrop, inner: MailDropSession) -> None:
        self._drop = drop
        self._inner = inner

    async def resolve(self, address: str) -> Resolution:
        return await self._inner.resolve(address)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def deliver(
        self, recipients: Sequence[Recipient], prefixes: Sequence[bytes], body: MessageSource
    ) -> list[DeliveryResult]:
        drop = self._drop
        sender = sender_of(prefixes[0]) if prefixes else ""
        facts = message_facts(sender, _head(body), drop.options.spam_header)
        results: list[DeliveryResult | None] = [None] * len(recipients)
        dispositions: list[Disposition] = []
        revisions: list[bytes] = []
        from_cache: list[bool] = []
        to_store: list[int] = []
        for i, recipient in enumerate(recipients):
            settings = drop.cached(recipient.user)
            disposition = decide(settings, facts, recipient.address) if settings is not None else None
            if disposition is None or disposition.action is not Action.STORE or disposition.forward_to:
                # Only an append is checked against the revision by the store: read afresh.
                settings = await drop.settings_of(recipient.user)
                disposition = decide(settings, facts, recipient.address)
                from_cache.append(False)
            else:
                assert settings is not None
                from_cache.append(True)
            revisions.append(settings.revision)
            if disposition.forward_to and drop.options.relay is None:
                log.warning("user=%s has forwarding set but no --forward-relay is configured", recipient.user)
                disposition = Disposition(Action.STORE, folder=disposition.folder, reason="forwarding off")
            if disposition.forward_to and drop.options.relay is not None:
                relay = drop.options.relay
                try:
                    trace = forward_header(recipient.address)
                    await trio.to_thread.run_sync(_forward, relay, sender, disposition.forward_to, body, trace)
                except (OSError, smtplib.SMTPException) as exc:
                    log.warning("user=%s forward failed: %s", recipient.user, type(exc).__name__)
                    results[i] = DeliveryResult(Outcome.UNAVAILABLE, detail="forwarding relay failed")
                    disposition = Disposition(Action.REFUSE, reason="forward failed")
            dispositions.append(disposition)
            if results[i] is not None:
                continue
            if disposition.action is Action.REFUSE:
                results[i] = DeliveryResult(Outcome.REFUSED_BY_RECIPIENT, detail=disposition.reason)
            elif disposition.action is Action.DISCARD:
                results[i] = DeliveryResult(Outcome.DELIVERED, detail=disposition.reason)
            else:
                to_store.append(i)

        def line(i: int, result: DeliveryResult) -> settings_pb2.DeliveryRecord:
            return drop.entry(
                recipients[i],
                dispositions[i],
                result,
                now_ms=int(time.time() * 1000),
                sender=sender,
                facts=facts,
                size=body.size,
            )

        logged_with_append: set[int] = set()
        if to_store:
            delivered = DeliveryResult(Outcome.DELIVERED)
            stored = await self._inner.deliver(
                [
                    _with_folder(recipients[i], dispositions[i].folder, line(i, delivered), revisions[i])
                    for i in to_store
                ],
                [prefixes[i] for i in to_store],
                body,
            )
            stale: list[int] = []
            for i, result in zip(to_store, stored, strict=True):
                results[i] = result
                if result.outcome is Outcome.DELIVERED:
                    logged_with_append.add(i)  # by the append itself (or by the first one, for a retry)
                elif result.outcome is Outcome.SETTINGS_CHANGED:
                    drop.forget(recipients[i].user)
                    if from_cache[i]:
                        stale.append(i)
            if stale:
                # Decided on cached settings that changed: once more on fresh ones (the second
                # pass reads them from the store, so a further change gives 451, not a loop).
                again = await self.deliver([recipients[i] for i in stale], [prefixes[i] for i in stale], body)
                for i, result in zip(stale, again, strict=True):
                    results[i] = result
                    logged_with_append.add(i)  # the second pass logged its own outcome
        final = [r for r in results if r is not None]
        assert len(final) == len(recipients)
        rest = [i for i in range(len(recipients)) if i not in logged_with_append]
        if rest:
            await drop.record([line(i, final[i]) for i in rest])
        return final


def _with_folder(recipient: Recipient, folder: str, log: settings_pb2.DeliveryRecord, revision: bytes) -> Recipient:
    """The append for `recipient`, into the folder its settings chose, with its log line and
    the settings' revision (the store refuses the append if they changed: 451, the MTA retries)."""
    return Recipient(recipient.address, recipient.user, mailbox=folder, log=log, settings_revision=revision)


def _result_word(disposition: Disposition, result: DeliveryResult) -> str:
    if result.outcome is not Outcome.DELIVERED:
        return str(result.outcome.value)
    if disposition.action is Action.DISCARD:
        return disposition.reason or "discarded"
    return disposition.reason or "delivered"


class SettingsMailDrop:
    def __init__(self, inner: MailDrop, store: str, epoch: int, options: PersonalOptions) -> None:
        self.inner = inner
        self.epoch = epoch
        self.options = options
        self.channel = open_channel(store)
        self.stub = settings_pb2_grpc.SettingsStub(self.channel)
        self._cache: OrderedDict[str, settings_pb2.UserSettings] = OrderedDict()

    def session(self) -> SettingsSession:
        return SettingsSession(self, self.inner.session())

    def cached(self, user: str) -> settings_pb2.UserSettings | None:
        """The user's settings as last read, if still cached (they may be stale)."""
        settings = self._cache.get(user)
        if settings is not None:
            self._cache.move_to_end(user)
        return settings

    def forget(self, user: str) -> None:
        self._cache.pop(user, None)

    async def settings_of(self, user: str) -> settings_pb2.UserSettings:
        """The user's settings read from the store (and cached); the defaults (plain INBOX
        delivery, no revision, not cached) if the store cannot say."""
        request = settings_pb2.GetSettingsRequest(user=user)
        try:
            settings: settings_pb2.UserSettings = await trio.to_thread.run_sync(
                lambda: self.stub.GetSettings(request, timeout=_SETTINGS_TIMEOUT), abandon_on_cancel=True
            )
        except grpc.RpcError as exc:
            log.warning("user=%s settings unavailable (%s): delivering to INBOX", user, exc.code())
            return settings_pb2.UserSettings(user=user)
        if settings.revision:
            self._cache[user] = settings
            self._cache.move_to_end(user)
            while len(self._cache) > _CACHED_USERS:
                self._cache.popitem(last=False)
        return settings

    def entry(
        self,
        recipient: Recipient,
        disposition: Disposition,
        result: DeliveryResult,
        *,
        now_ms: int,
        sender: str,
        facts: MessageFacts,
        size: int,
    ) -> settings_pb2.DeliveryRecord:
        """The delivery-log line for one recipient's outcome."""
        reply = replies.for_outcome(
            result.outcome, recipient.address, uid=result.uid, quota_tempfail=self.options.quota_tempfail
        )
        stored = result.outcome is Outcome.DELIVERED and disposition.action is Action.STORE
        return settings_pb2.DeliveryRecord(
            time_ms=now_ms,
            sender=sender,
            recipient=recipient.address,
            user=recipient.user,
            message_id=facts.message_id,
            size=size,
            reply_code=reply.code,
            result=_result_word(disposition, result),
            folder=disposition.folder if stored else "",
        )

    async def record(self, records: list[settings_pb2.DeliveryRecord]) -> None:
        """Log outcomes that stored nothing (a stored message is logged by its append)."""
        request = settings_pb2.RecordDeliveriesRequest(epoch=self.epoch, records=records)
        try:
            await trio.to_thread.run_sync(
                lambda: self.stub.RecordDeliveries(request, timeout=_SETTINGS_TIMEOUT), abandon_on_cancel=True
            )
        except grpc.RpcError as exc:
            log.warning("delivery log not written (%s)", exc.code())

    def close(self) -> None:
        self.channel.close()
