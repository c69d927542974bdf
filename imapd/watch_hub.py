"""One change-feed stream per selected mailbox per process, shared by sessions.

The first session that selects a mailbox starts a watch task; later ones join
it; the task ends when the last one leaves (refcount). Each subscriber has its
own bounded channel, so one stuck client never holds back the others or grows
memory without bound. A subscriber that falls more than its channel behind (a
client idling on a slow link while an import puts thousands of messages a
second into the mailbox) is not cut off: its queued events are dropped and it
is marked `stale`; its session takes no event until it has asked the store
what changed since the modseq it last saw (`resync`: the same catch-up a
reopened Watch starts with, one event however far behind) and then reads on.

Our own writes (issue 13). The store leaves the events of this process's writes
off its Watch streams and returns them in each write's reply instead; the store
client hands them here (`write_started`/`write_ended`: the hub is the client's
`OwnWrites`). So a feed has two sources, and the hub merges them into the one
stream per mailbox every subscriber reads, in modseq order and each change
once. Both kinds wait in one heap ordered by modseq, and only its head is ever
delivered (nothing overtakes):

- a Watch event (another writer's) comes in commit order, but a write of ours
  for the same user may have committed before it and not be answered yet: it
  waits until every write of that user that was in flight when it arrived is
  answered (any of those that is older then sits before it in the heap; a
  write sent after it arrived commits after it);
- an event from our own reply carries `after_modseq`, the mailbox's modseq
  before it: it waits until the feed delivered that far (another writer's
  earlier change may still be on its way over Watch, or our own earlier write's
  answer still coming);
- the first event of a Watch opened with `since_modseq` is the store's catch-up
  from LMDB, which holds everything committed up to its modseq, ours included:
  held events at or below it are dropped, and our own events wait for it.

Every modseq of a mailbox is some event's, from one source or the other, so the
head always becomes ready (a write too big for its reply has the rest of its
events sent over Watch as before: they wait for its answer by the first rule).
Should one not (an answer lost with its write's outcome unknown), the hub
resubscribes from what it delivered and the store's catch-up fills the gap.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Final

import trio

from imapd.account_hub import SUBSCRIBER_BUFFER as ACCOUNT_BUFFER
from imapd.account_hub import AccountHub, drain
from imapd.errors import StoreError, StoreErrorKind
from imapd.store_client import ChangeEvent, StoreClient

log = logging.getLogger("imapd.watch")

SUBSCRIBER_BUFFER: Final = 2000  # events queued per subscriber before it goes stale
# A feed nobody listens to stays open this long: clients reconnect and
# reselect all the time, and a Watch stream costs a call and a thread to set up.
LINGER_SECONDS: Final = 15.0
_MAX_LINGERING: Final = 256
# Bound on waiting for the feed to deliver a change a peer session already
# committed; a healthy feed takes about a millisecond.
CATCH_UP_SECONDS: Final = 2.0
_MAX_RECENT_RANGE: Final = 10_000
# An own event whose predecessor has not come for this long: resubscribe (the catch-up fills the gap).
GAP_SECONDS: Final = 2.0


@dataclass(order=True)
class _Held:
    """An event waiting in a feed's heap for its turn."""

    modseq: int
    arrival: int  # ties (never between two real changes) keep arrival order
    event: ChangeEvent = field(compare=False)
    own: bool = field(compare=False)  # from our write's reply, not from Watch
    # Watch: the newest ticket of the user's writes in flight when it arrived (0: none)
    barrier: int = field(compare=False, default=0)


@dataclass(eq=False)
class Subscription:
    hub: WatchHub
    key: tuple[str, int]
    receive: trio.MemoryReceiveChannel[ChangeEvent]
    send: trio.MemorySendChannel[ChangeEvent]
    # Highest modseq the shared stream had delivered when this one joined:
    # events up to it went by before we listened.
    joined_after: int
    # The feed broke (store down) rather than the mailbox going away: the session
    # must resynchronise by reconnecting.
    failed: bool = False
    # This subscriber fell more than its channel behind and its queued events were
    # dropped: its session must `resync` before it takes any further event.
    stale: bool = False
    # What another session of this process has committed (and been told OK
    # for) that this subscriber must see before it answers its next command.
    must_reach_modseq: int = 0
    must_reach_uid: int = 0
    # Read-write sessions claim new mail as \Recent; the hub gives each batch to one of them.
    claims_recent: bool = False
    recent: set[int] = field(default_factory=set)  # claimed for this one, not yet taken
    writing: int = 0  # APPEND/COPY into this mailbox in flight: that session claims its own mail
    # Bumped at every send into or close of `send` (`put`, `end`). While it equals
    # `found_empty_at`, the channel is as the session last found it (empty, open), so its
    # next command need not ask it (a raised WouldBlock, twice per command: issue 13).
    sent: int = 0
    found_empty_at: int = -1

    def close(self) -> None:
        self.hub._leave(self)

    def put(self, event: ChangeEvent) -> None:
        """Queue `event` for the session (trio.WouldBlock when its channel is full)."""
        self.send.send_nowait(event)
        self.sent += 1

    def end(self) -> None:
        """No more events: the session reads the channel's end."""
        self.send.close()
        self.sent += 1


@dataclass(eq=False)
class _Feed:
    cancel: trio.CancelScope
    subscribers: list[Subscription] = field(default_factory=list)
    delivered_modseq: int = 0
    delivered_uid: int = 0  # highest UID the mailbox is known to hold (snapshot or feed)
    # UIDs below this have had their \Recent claimed through this process (a session's own
    # APPEND, or the hub): new mail under it needs no ClaimRecent call of its own.
    recent_claimed_below: int = 0
    idle_since: float | None = None  # trio time the last subscriber left
    advanced: trio.Event = field(default_factory=trio.Event)  # set (and replaced) per delivered event
    held: list[_Held] = field(default_factory=list)  # a heap: events not yet delivered
    wake: trio.Event = field(default_factory=trio.Event)  # set when `held` may have a ready head
    awaiting_catch_up: bool = False  # the Watch was (re)opened with since_modseq: its first event
    delivering: bool = False  # `_deliver_held` is delivering a popped event (claiming its \Recent)
    watch_scope: trio.CancelScope | None = None  # the open Watch: cancelled to resubscribe


class WatchHub:
    def __init__(
        self,
        store: StoreClient,
        nursery: trio.Nursery,
        linger: float = LINGER_SECONDS,
        *,
        buffer: int = SUBSCRIBER_BUFFER,
        account_buffer: int = ACCOUNT_BUFFER,
    ) -> None:
        if buffer < 1:
            raise ValueError(f"a subscriber's buffer must hold at least one event, not {buffer}")
        self._store = store
        self._nursery = nursery
        self._feeds: dict[tuple[str, int], _Feed] = {}
        self.linger = linger
        self.buffer = buffer
        # Called with (user, mailbox id) once a mailbox's feed is gone and no new one was
        # opened: no session here has it selected (ServerContext drops its caches).
        self.released: list[Callable[[tuple[str, int]], None]] = []
        # Account-wide feeds (NOTIFY) live beside the per-mailbox ones.
        self.accounts = AccountHub(store, nursery, account_buffer)
        # Our writes in flight (`write_started`): user -> tickets, ticket -> user; and the feeds
        # holding a Watch event until some of a user's writes are answered.
        self._tickets = itertools.count(1)
        self._writing: dict[str, set[int]] = {}
        self._ticket_user: dict[int, str] = {}
        self._barred: dict[str, set[tuple[str, int]]] = {}
        self._arrivals = itertools.count()
        self.resubscriptions = 0  # (tests, logs) Watch streams reopened to fill a gap
        self.resyncs = 0  # (tests, logs) stale subscribers brought up to date from the store
        store.report_own_writes(self)
        if linger > 0:
            nursery.start_soon(self._reap)

    @property
    def active_feeds(self) -> int:
        """Feeds with at least one subscriber."""
        return sum(1 for feed in self._feeds.values() if feed.subscribers)

    @property
    def open_feeds(self) -> int:
        return len(self._feeds)

    def subscribe(
        self, user: str, mailbox_id: int, since_modseq: int, *, last_uid: int = 0, claims_recent: bool = False
    ) -> Subscription:
        """Join the mailbox's feed; `last_uid` is the highest UID in the snapshot the caller holds."""
        key = (user, mailbox_id)
        send, receive = trio.open_memory_channel[ChangeEvent](self.buffer)
        feed = self._feeds.get(key)
        if feed is None:
            # Own events wait for the Watch's catch-up from the start (it may hold them).
            feed = _Feed(trio.CancelScope(), delivered_modseq=since_modseq, awaiting_catch_up=since_modseq > 0)
            self._feeds[key] = feed
            self._nursery.start_soon(self._run, key, feed)
        feed.delivered_uid = max(feed.delivered_uid, last_uid)
        sub = Subscription(self, key, receive, send, feed.delivered_modseq, claims_recent=claims_recent)
        feed.subscribers.append(sub)
        feed.idle_since = None
        return sub

    # ---- our own writes (StoreClient.report_own_writes) ------------------------------
    def write_started(self, user: str) -> int:
        ticket = next(self._tickets)
        self._writing.setdefault(user, set()).add(ticket)
        self._ticket_user[ticket] = user
        return ticket

    def write_ended(self, ticket: int, events: Sequence[ChangeEvent], *, certain: bool) -> None:
        user = self._ticket_user.pop(ticket, None)
        if user is None:
            return
        tickets = self._writing.get(user)
        if tickets is not None:
            tickets.discard(ticket)
            if not tickets:
                del self._writing[user]
        for event in events:
            feed = self._feeds.get((user, event.mailbox_id))
            if feed is not None:
                self._hold(user, feed, event, own=True)
        if not certain:
            # It may have committed, and its events will come from nowhere: ask the store.
            for key, feed in list(self._feeds.items()):
                if key[0] == user:
                    self._resubscribe(feed)
        for key in self._barred.pop(user, ()):
            feed = self._feeds.get(key)
            if feed is not None:
                feed.wake.set()

    def _hold(self, user: str, feed: _Feed, event: ChangeEvent, *, own: bool, catch_up: bool = False) -> None:
        """Queue an event for delivery in modseq order (see the module's docstring)."""
        if catch_up:
            feed.awaiting_catch_up = False
            if any(h.modseq <= event.modseq for h in feed.held):
                feed.held = [h for h in feed.held if h.modseq > event.modseq]  # the catch-up holds them
                heapq.heapify(feed.held)
        if event.modseq <= feed.delivered_modseq:
            feed.wake.set()
            return  # delivered already (an own write the catch-up covered), or nothing new
        barrier = 0
        if not own and not catch_up:
            tickets = self._writing.get(user)
            if tickets:
                barrier = max(tickets)
                self._barred.setdefault(user, set()).add((user, event.mailbox_id))
        if (
            own
            and not feed.held
            and not feed.delivering
            and self._ready_own(feed, event)
            and (not event.added or self._recent_taker(feed, event) is None)
        ):
            # The usual own write: nothing waits before it and no \Recent claim to ask for,
            # so it goes out now, as `_deliver_held` would send it, without waking that task
            # (a scheduling round per write, issue 13).
            self._delivered(feed, event)
            return
        heapq.heappush(feed.held, _Held(event.modseq, next(self._arrivals), event, own, barrier))
        feed.wake.set()

    @staticmethod
    def _ready_own(feed: _Feed, event: ChangeEvent) -> bool:
        return not feed.awaiting_catch_up and event.after_modseq <= feed.delivered_modseq

    def _ready(self, user: str, feed: _Feed, head: _Held) -> bool:
        if head.own:
            return self._ready_own(feed, head.event)
        if head.barrier:
            tickets = self._writing.get(user)
            return not tickets or min(tickets) > head.barrier
        return True

    def _resubscribe(self, feed: _Feed) -> None:
        if feed.watch_scope is not None and not feed.watch_scope.cancel_called:
            self.resubscriptions += 1
            feed.awaiting_catch_up = True  # own events wait for the new stream's catch-up
            feed.watch_scope.cancel()

    # ---- read-your-peers'-writes -------------------------------------------------
    def committed(
        self, user: str, mailbox_id: int, *, modseq: int = 0, uid: int = 0, writer: Subscription | None = None
    ) -> None:
        """A session of this process was told OK for a write to this mailbox.

        Every other subscriber must see it (`catch_up`) before answering its
        next command (RFC 3501 5.5/7.4.1 as clients read it): the feed is
        asynchronous, so without this the change shows one command late."""
        feed = self._feeds.get((user, mailbox_id))
        if feed is not None:
            self._mark(feed, modseq, uid, writer)

    @staticmethod
    def _mark(feed: _Feed, modseq: int, uid: int, writer: Subscription | None) -> None:
        if modseq <= feed.delivered_modseq and uid <= feed.delivered_uid:
            return
        for sub in feed.subscribers:
            if sub is not writer:
                sub.must_reach_modseq = max(sub.must_reach_modseq, modseq)
                sub.must_reach_uid = max(sub.must_reach_uid, uid)

    def recent_claimed(self, user: str, mailbox_id: int, below: int) -> None:
        """A session here claimed \\Recent for the mailbox's UIDs below `below` (with its append)."""
        feed = self._feeds.get((user, mailbox_id))
        if feed is not None:
            feed.recent_claimed_below = max(feed.recent_claimed_below, below)

    def behind(self, sub: Subscription) -> bool:
        """True while the feed has not delivered what `committed` promised this subscriber."""
        if not sub.must_reach_modseq and not sub.must_reach_uid:
            return False
        feed = self._feeds.get(sub.key)
        if feed is None or sub not in feed.subscribers:
            return False  # the feed ended: the session learns that from its channel
        if feed.delivered_modseq >= sub.must_reach_modseq and feed.delivered_uid >= sub.must_reach_uid:
            sub.must_reach_modseq = sub.must_reach_uid = 0
            return False
        return True

    async def catch_up(self, sub: Subscription, timeout: float = CATCH_UP_SECONDS) -> None:
        """Wait (bounded) until the feed delivered what this subscriber was promised."""
        with trio.move_on_after(timeout) as scope:
            while self.behind(sub):
                feed = self._feeds.get(sub.key)
                if feed is None:
                    return
                await feed.advanced.wait()
        if scope.cancelled_caught:
            log.warning("watch feed of mailbox %d did not catch up in %.1f s", sub.key[1], timeout)
            sub.must_reach_modseq = sub.must_reach_uid = 0

    async def _claim_recent(self, user: str, mailbox_id: int, feed: _Feed, event: ChangeEvent) -> None:
        """New mail is \\Recent to exactly one session: the first read-write subscriber here gets
        what the store lets it claim (nothing if a SELECT elsewhere took it first)."""
        taker = self._recent_taker(feed, event)
        if taker is None:
            return
        up_to = max(m.uid for m in event.added) + 1
        try:
            low, high = await self._store.claim_recent(user, mailbox_id, up_to)
        except StoreError as exc:
            log.warning("claiming \\Recent in mailbox %d failed: %s", mailbox_id, exc.kind.value)
            return
        feed.recent_claimed_below = max(feed.recent_claimed_below, high)
        if high - low <= _MAX_RECENT_RANGE:
            taker.recent.update(range(low, high))  # may include mail a racing SELECT left to us
        else:
            taker.recent.update(m.uid for m in event.added if low <= m.uid < high)

    @staticmethod
    def _recent_taker(feed: _Feed, event: ChangeEvent) -> Subscription | None:
        """The subscriber to claim `event`'s new mail as \\Recent for, if a claim is to be asked."""
        taker = None
        for sub in feed.subscribers:
            if sub.writing:
                return None  # that session claims its own mail
            if taker is None and sub.claims_recent:
                taker = sub
        if taker is None:
            return None
        highest = 0
        for meta in event.added:
            highest = meta.uid if meta.uid > highest else highest
        if highest + 1 <= feed.recent_claimed_below:
            return None  # a session here claimed it with its own append; asking again costs a commit
        return taker

    def _leave(self, sub: Subscription) -> None:
        sub.end()
        sub.receive.close()
        feed = self._feeds.get(sub.key)
        if feed is None or sub not in feed.subscribers:
            return
        feed.subscribers.remove(sub)
        if not feed.subscribers:
            if self.linger > 0:
                feed.idle_since = trio.current_time()
            else:
                self._close(sub.key, feed)

    def _close(self, key: tuple[str, int], feed: _Feed) -> None:
        if self._feeds.get(key) is feed:
            del self._feeds[key]
        feed.cancel.cancel()

    async def _reap(self) -> None:
        """Close feeds idle for longer than `linger`, and the oldest idle ones beyond the cap."""
        while True:
            await trio.sleep(min(1.0, self.linger))
            now = trio.current_time()
            idle = sorted(
                ((feed.idle_since, key, feed) for key, feed in self._feeds.items() if feed.idle_since is not None),
                key=lambda item: item[0],
            )
            excess = len(idle) - _MAX_LINGERING
            for i, (since, key, feed) in enumerate(idle):
                if i < excess or now - since >= self.linger:
                    self._close(key, feed)

    async def _run(self, key: tuple[str, int], feed: _Feed) -> None:
        mailbox_id = key[1]
        gone = False
        with feed.cancel:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._deliver_held, key, feed)
                try:
                    gone = await self._read_watch(key, feed)
                except StoreError as exc:
                    log.warning("watch of mailbox %d ended: %s", mailbox_id, exc.kind.value)
                nursery.cancel_scope.cancel()
        # The stream ended (mailbox gone, store down, or cancelled): tell everyone.
        if self._feeds.get(key) is feed:
            del self._feeds[key]
        feed.held.clear()
        for sub in feed.subscribers:
            sub.failed = not gone
            sub.end()
        feed.subscribers.clear()
        feed.advanced.set()
        if key not in self._feeds:
            for listener in self.released:
                listener(key)

    async def _read_watch(self, key: tuple[str, int], feed: _Feed) -> bool:
        """Hold what the store's Watch sends, reopening it from what was delivered when asked
        (`_resubscribe`); True once the mailbox is gone (deleted or renamed)."""
        user, mailbox_id = key
        while True:
            since = feed.delivered_modseq
            feed.awaiting_catch_up = since > 0  # the store sends its catch-up first
            with trio.CancelScope() as scope:
                feed.watch_scope = scope
                try:
                    async with aclosing(self._store.watch(user, mailbox_id, since)) as events:
                        first = since > 0
                        async for event in events:
                            if event.heartbeat:
                                continue
                            if event.deleted or event.renamed:
                                self._send(feed, event)  # nothing after it matters: the mailbox is gone
                                return True
                            self._hold(user, feed, event, own=False, catch_up=first)
                            first = False
                    return False  # the store ended the stream: the subscribers must resynchronise
                except StoreError as exc:
                    if exc.kind is not StoreErrorKind.FELL_BEHIND:
                        raise
                    # This process read the stream slower than the mailbox changed (a fast
                    # import): reopen it from what was delivered, as the store asks.
                    self.resubscriptions += 1
                    log.info("watch of mailbox %d fell behind the store; resubscribing", mailbox_id)
                    continue
            feed.watch_scope = None
            log.info("watch of mailbox %d resubscribed from modseq %d to fill a gap", mailbox_id, since)

    async def _deliver_held(self, key: tuple[str, int], feed: _Feed) -> None:
        """Deliver the heap's head while it is ready; resubscribe when an own event waits too long."""
        user = key[0]
        while True:
            feed.wake = trio.Event()
            while feed.held and self._ready(user, feed, feed.held[0]):
                held = heapq.heappop(feed.held)
                if held.modseq > feed.delivered_modseq:
                    feed.delivering = True  # (an own event arriving meanwhile waits in the heap)
                    try:
                        await self._deliver(key, feed, held.event)
                    finally:
                        feed.delivering = False
            head = feed.held[0] if feed.held else None
            if head is not None and head.barrier and not head.own:
                self._barred.setdefault(user, set()).add(key)  # woken by the next answered write
            if head is not None and head.own and not feed.awaiting_catch_up:
                with trio.move_on_after(GAP_SECONDS) as waited:
                    await feed.wake.wait()
                if waited.cancelled_caught:
                    log.warning(
                        "mailbox %d: own change %d waits for modseq %d that never came; resubscribing",
                        key[1],
                        head.modseq,
                        head.event.after_modseq,
                    )
                    self._resubscribe(feed)
            else:
                await feed.wake.wait()

    async def _deliver(self, key: tuple[str, int], feed: _Feed, event: ChangeEvent) -> None:
        if event.added:
            await self._claim_recent(key[0], key[1], feed, event)
        self._delivered(feed, event)

    def _delivered(self, feed: _Feed, event: ChangeEvent) -> None:
        feed.delivered_modseq = max(feed.delivered_modseq, event.modseq)
        for meta in event.added:
            feed.delivered_uid = max(feed.delivered_uid, meta.uid)
        self._send(feed, event)

    def _send(self, feed: _Feed, event: ChangeEvent) -> None:
        for sub in list(feed.subscribers):
            try:
                sub.put(event)
            except trio.WouldBlock:
                self._go_stale(sub, event)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                feed.subscribers.remove(sub)
        feed.advanced.set()
        feed.advanced = trio.Event()

    def _go_stale(self, sub: Subscription, event: ChangeEvent) -> None:
        """The subscriber's channel is full: drop what it holds (the store's catch-up will say
        it all in one event) and queue `event`, so the mailbox's end (deleted, renamed) still
        reaches it and everything after the drop stays in order."""
        dropped = drain(sub.receive)
        if not sub.stale:
            log.info(
                "watch subscriber of mailbox %d fell %d events behind; it resynchronises from the store",
                event.mailbox_id,
                dropped,
            )
        sub.stale = True
        sub.put(event)

    async def resync(self, sub: Subscription, since_modseq: int) -> ChangeEvent | None:
        """What changed in the subscriber's mailbox after `since_modseq` (the modseq its session
        has taken in), as one event; None when the mailbox is gone. Clears `stale` first: should
        the subscriber fall behind again meanwhile, it is stale again and resyncs once more.

        The store's Watch catch-up (`messages.changes_since`) is that event: a Watch opened
        with `since_modseq` starts with it, and the stream is closed once it came. Every event
        the subscriber received and was told to skip (while stale) is committed, so it is in it."""
        sub.stale = False
        self.resyncs += 1
        user, mailbox_id = sub.key
        done = False
        caught_up: ChangeEvent | None = None  # None if the stream ends at once: the mailbox is gone
        try:
            async with aclosing(self._store.watch(user, mailbox_id, max(since_modseq, 1))) as events:
                async for event in events:
                    if not event.heartbeat:
                        caught_up = None if event.deleted or event.renamed else event
                        break
            done = True  # (only once the stream is closed: closing it may be cancelled too)
            return caught_up
        except StoreError as exc:
            if exc.kind is StoreErrorKind.NOT_FOUND:
                done = True
                return None
            raise
        finally:
            if not done:  # failed or cancelled (DONE during IDLE): again at the next turn
                sub.stale = True
