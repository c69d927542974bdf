"""One account-wide change feed per user per process, shared by NOTIFY sessions.

A session with NOTIFY (RFC 5465) active joins its user's feed; the first one
opens the store's WatchAccount stream, the last one to leave ends it. The
store streams every mailbox's events plus mailbox and subscription changes,
so a session watching "personal" mailboxes holds no stream (and no store
thread) per mailbox. Each subscriber has a bounded channel: one that falls
behind (an import into some folder while the client idles on a slow link) has
its queued events dropped and is marked `stale`, and its session rebuilds what
it owes the client from one listing of the account's mailboxes with their
status (imapd.session.notify_commands) instead of growing without bound or
giving up; only what that comparison cannot hold ends in [NOTIFICATIONOVERFLOW].
The same happens to every subscriber when the store cuts this process's stream
off for reading too slowly: the stream is reopened.
"""

from __future__ import annotations

import contextlib
import logging
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Final

import trio

from imapd.errors import StoreError, StoreErrorKind
from imapd.store_client import ChangeEvent, StoreClient

log = logging.getLogger("imapd.account_watch")


def drain(receive: trio.MemoryReceiveChannel[ChangeEvent]) -> int:
    """Take everything `receive` holds without waiting (a subscriber that fell behind, both
    hubs); returns how many events were dropped."""
    dropped = 0
    while True:
        try:
            receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return dropped
        dropped += 1


SUBSCRIBER_BUFFER: Final = 1000
# Bound on waiting for the feed to deliver what a peer session of this process
# committed (as imapd.watch_hub.CATCH_UP_SECONDS), and on promises kept per subscriber.
CATCH_UP_SECONDS: Final = 2.0
_MAX_PROMISES: Final = 64


def _inbox_canonical(name: str) -> str:
    """INBOX in any case, also as the first component, is INBOX (as the store names it)."""
    head, sep, rest = name.partition("/")
    return "INBOX" + sep + rest if head.upper() == "INBOX" else name


@dataclass(frozen=True, slots=True)
class _Promise:
    """A write a session here was told OK for: the feed's event for it is still to come."""

    mailbox_id: int = 0
    modseq: int = 0
    uid: int = 0
    name: str = ""  # a mailbox or subscription change, by (new) name

    def kept_by(self, event: ChangeEvent) -> bool:
        if self.name:
            return _inbox_canonical(event.name) == _inbox_canonical(self.name)
        if event.mailbox_id != self.mailbox_id:
            return False
        return bool(self.modseq and event.modseq >= self.modseq) or bool(
            self.uid and any(m.uid >= self.uid for m in event.added)
        )


@dataclass(eq=False)
class AccountSubscription:
    hub: AccountHub
    user: str
    receive: trio.MemoryReceiveChannel[ChangeEvent]
    send: trio.MemorySendChannel[ChangeEvent]
    # The session fell more than the buffer behind and its queued events were dropped: it
    # takes no event before it compared its state with the store's (`resynced` after).
    stale: bool = False
    # The stream ended under it (store down or restarting): notifications stopped.
    failed: bool = False
    promised: list[_Promise] = field(default_factory=list)

    def close(self) -> None:
        self.hub._leave(self)

    def resynced(self) -> None:
        """The session is about to read the store's state: events from now on count again
        (one that comes meanwhile is also in what it reads, and harmless twice)."""
        self.stale = False
        self.hub.resyncs += 1


@dataclass(eq=False)
class _Feed:
    cancel: trio.CancelScope
    subscribers: list[AccountSubscription] = field(default_factory=list)
    advanced: trio.Event = field(default_factory=trio.Event)  # set (and replaced) per delivered event


class AccountHub:
    def __init__(self, store: StoreClient, nursery: trio.Nursery, buffer: int = SUBSCRIBER_BUFFER) -> None:
        self._store = store
        self._nursery = nursery
        self._feeds: dict[str, _Feed] = {}
        self.buffer = buffer
        self.resyncs = 0  # (tests, logs) stale subscribers that compared their state with the store's

    @property
    def open_feeds(self) -> int:
        return len(self._feeds)

    def subscribe(self, user: str) -> AccountSubscription:
        send, receive = trio.open_memory_channel[ChangeEvent](self.buffer)
        feed = self._feeds.get(user)
        if feed is None:
            feed = _Feed(trio.CancelScope())
            self._feeds[user] = feed
            self._nursery.start_soon(self._run, user, feed)
        sub = AccountSubscription(self, user, receive, send)
        feed.subscribers.append(sub)
        return sub

    # ---- read-your-peers'-writes -------------------------------------------------
    def committed(self, user: str, *, mailbox_id: int = 0, modseq: int = 0, uid: int = 0, name: str = "") -> None:
        """A session of this process was told OK for a write to this account: its NOTIFY
        peers here must report it by their next command (`catch_up`)."""
        feed = self._feeds.get(user)
        if feed is None:
            return
        promise = _Promise(mailbox_id, modseq, uid, name)
        for sub in feed.subscribers:
            sub.promised.append(promise)
            del sub.promised[:-_MAX_PROMISES]

    async def catch_up(self, sub: AccountSubscription, timeout: float = CATCH_UP_SECONDS) -> None:
        """Wait (bounded) until the feed delivered what this subscriber was promised."""
        with trio.move_on_after(timeout) as scope:
            while sub.promised:
                feed = self._feeds.get(sub.user)
                if feed is None or sub not in feed.subscribers:
                    break
                await feed.advanced.wait()
        if scope.cancelled_caught:
            log.warning("account watch did not catch up in %.1f s", timeout)
        sub.promised.clear()

    def _leave(self, sub: AccountSubscription) -> None:
        sub.send.close()
        sub.receive.close()
        feed = self._feeds.get(sub.user)
        if feed is None or sub not in feed.subscribers:
            return
        feed.subscribers.remove(sub)
        if not feed.subscribers:
            del self._feeds[sub.user]
            feed.cancel.cancel()

    async def _run(self, user: str, feed: _Feed) -> None:
        with feed.cancel:
            while True:
                try:
                    async with aclosing(self._store.watch_account(user)) as events:
                        async for event in events:
                            if not event.heartbeat:
                                self._send(feed, event)
                    break
                except StoreError as exc:
                    if exc.kind is not StoreErrorKind.FELL_BEHIND:
                        log.warning("account watch ended: %s", exc.kind.value)
                        break
                    # This process read the stream slower than the account changed: reopen it;
                    # what went by in between is in each subscriber's resync.
                    log.info("account watch fell behind the store; reopening it")
                    for sub in list(feed.subscribers):
                        self._go_stale(sub)
        if self._feeds.get(user) is feed:
            del self._feeds[user]
        for sub in feed.subscribers:
            sub.failed = True
            sub.send.close()
        feed.subscribers.clear()
        feed.advanced.set()

    def _send(self, feed: _Feed, event: ChangeEvent) -> None:
        for sub in list(feed.subscribers):
            if sub.promised:
                sub.promised = [p for p in sub.promised if not p.kept_by(event)]
            if sub.stale:
                continue  # the resync reads the store after this event committed
            try:
                sub.send.send_nowait(event)
            except trio.WouldBlock:
                self._go_stale(sub)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._leave(sub)
        feed.advanced.set()
        feed.advanced = trio.Event()

    @staticmethod
    def _go_stale(sub: AccountSubscription) -> None:
        """Drop what the subscriber holds; it resyncs from the store before reading on."""
        dropped = drain(sub.receive)
        if not sub.stale:
            log.info("account watch subscriber fell %d events behind; it resynchronises from the store", dropped)
        sub.stale = True
        # Wakes a session waiting in IDLE (a stream reopened under it): it resyncs at once.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            sub.send.send_nowait(ChangeEvent(0, 0, heartbeat=True, user=sub.user))
