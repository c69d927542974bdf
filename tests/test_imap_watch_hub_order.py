"""The hub merges two sources per mailbox (issue 13): other writers' events from
the store's Watch, and this process's own writes' events from their replies.
Each case scripts both sources in a racy order and checks that every subscriber
gets each change once, in modseq order, and that a gap is filled from the store."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable

import trio
import trio.testing

from imapd.errors import StoreError, StoreErrorKind
from imapd.store_client import ChangeEvent, MessageMeta
from imapd.store_fake import FakeStore
from imapd.watch_hub import GAP_SECONDS, Subscription, WatchHub

USER, MAILBOX = "ann", 7


class ScriptedStore(FakeStore):
    """A store whose Watch streams send what the test puts on them."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: list[int] = []  # since_modseq of each Watch opened
        self.streams: list[trio.MemorySendChannel[ChangeEvent | StoreError]] = []

    async def watch(self, user: str, mailbox_id: int, since_modseq: int) -> AsyncGenerator[ChangeEvent, None]:
        send, receive = trio.open_memory_channel[ChangeEvent | StoreError](100)
        self.opened.append(since_modseq)
        self.streams.append(send)
        async with receive:
            async for item in receive:
                if isinstance(item, StoreError):
                    raise item
                yield item

    def send(self, event: ChangeEvent, stream: int = -1) -> None:
        self.streams[stream].send_nowait(event)

    def fail(self, exc: StoreError) -> None:
        """The open Watch stream ends with `exc`."""
        self.streams[-1].send_nowait(exc)


def _added(modseq: int, uid: int, after: int = 0) -> ChangeEvent:
    return ChangeEvent(MAILBOX, modseq, added=(MessageMeta(uid, modseq, ()),), after_modseq=after)


def _flags(modseq: int, uid: int, after: int = 0) -> ChangeEvent:
    return ChangeEvent(MAILBOX, modseq, flags=(MessageMeta(uid, modseq, ("\\Seen",)),), after_modseq=after)


def _run(scenario: Callable[[ScriptedStore, WatchHub, Subscription], Awaitable[None]], buffer: int = 100) -> None:
    async def main() -> None:
        store = ScriptedStore()
        async with trio.open_nursery() as nursery:
            hub = WatchHub(store, nursery, linger=0, buffer=buffer)
            sub = hub.subscribe(USER, MAILBOX, 10, last_uid=9)
            await trio.testing.wait_all_tasks_blocked()
            await scenario(store, hub, sub)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def _stale(sub: Subscription) -> bool:
    return sub.stale


def _received(sub: Subscription) -> list[int]:
    got = []
    while True:
        try:
            got.append(sub.receive.receive_nowait().modseq)
        except trio.WouldBlock:
            return got


async def _settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


def test_own_append_answered_before_an_earlier_delivery_waits_for_it() -> None:
    """lmtpd's UID 10 (modseq 11) is still on the Watch when our UID 11 (modseq 12) is answered."""

    async def scenario(store: ScriptedStore, hub: WatchHub, sub: Subscription) -> None:
        store.send(ChangeEvent(MAILBOX, 10))  # the catch-up: nothing after the snapshot
        ticket = hub.write_started(USER)
        hub.write_ended(ticket, [_added(12, 11, after=11)], certain=True)
        await _settle()
        assert _received(sub) == []  # modseq 11 has not come yet
        store.send(_added(11, 10))
        await _settle()
        assert _received(sub) == [11, 12]

    _run(scenario)


def test_delivery_arriving_while_our_older_write_is_unanswered_waits_for_it() -> None:
    """Our STORE committed at modseq 11, lmtpd's append at 12 reaches us before our answer."""

    async def scenario(store: ScriptedStore, hub: WatchHub, sub: Subscription) -> None:
        store.send(ChangeEvent(MAILBOX, 10))
        await _settle()
        ticket = hub.write_started(USER)
        store.send(_added(12, 10))
        await _settle()
        assert _received(sub) == []  # our write may have committed before it
        hub.write_ended(ticket, [_flags(11, 3, after=10)], certain=True)
        await _settle()
        assert _received(sub) == [11, 12]

    _run(scenario)


def test_delivery_before_our_newer_write_goes_first_once_that_is_answered() -> None:
    async def scenario(store: ScriptedStore, hub: WatchHub, sub: Subscription) -> None:
        store.send(ChangeEvent(MAILBOX, 10))
        await _settle()
        ticket = hub.write_started(USER)
        store.send(_added(11, 10))
        await _settle()
        later = hub.write_started(USER)  # sent after the delivery arrived: it cannot be older
        hub.write_ended(ticket, [_flags(12, 3, after=11)], certain=True)
        await _settle()
        assert _received(sub) == [11, 12]
        store.send(_added(13, 11))
        await _settle()
        assert _received(sub) == []  # `later` was sent before this one arrived: it may be older
        hub.write_ended(later, [], certain=True)
        await _settle()
        assert _received(sub) == [13]

    _run(scenario)


def test_catch_up_replaces_own_events_it_covers_each_change_once() -> None:
    async def scenario(store: ScriptedStore, hub: WatchHub, sub: Subscription) -> None:
        ticket = hub.write_started(USER)
        hub.write_ended(ticket, [_flags(11, 3, after=10)], certain=True)
        await _settle()
        assert _received(sub) == []  # own events wait for the Watch's catch-up
        catch_up = ChangeEvent(MAILBOX, 12, flags=(MessageMeta(3, 11, ("\\Seen",)),))
        store.send(catch_up)
        await _settle()
        assert _received(sub) == [12]  # the catch-up holds modseq 11: not told twice
        ticket = hub.write_started(USER)
        hub.write_ended(ticket, [_flags(13, 4, after=12)], certain=True)
        await _settle()
        assert _received(sub) == [13]

    _run(scenario)


def test_a_write_whose_answer_was_lost_resubscribes_from_what_was_delivered() -> None:
    async def scenario(store: ScriptedStore, hub: WatchHub, sub: Subscription) -> None:
        store.send(ChangeEvent(MAILBOX, 10))
        ticket = hub.write_started(USER)
        hub.write_ended(ticket, [_flags(11, 3, after=10)], certain=True)
        await _settle()
        assert _received(sub) == [11]
        ticket = hub.write_started(USER)
        hub.write_ended(ticket, [], certain=False)  # committed or not: nobody knows
        await _settle()
        assert store.opened == [10, 11] and hub.resubscriptions == 1
        store.send(ChangeEvent(MAILBOX, 12, flags=(MessageMeta(4, 12, ("\\Seen",)),)))
        await _settle()
        assert _received(sub) == [12]

    _run(scenario)


def test_an_own_event_whose_predecessor_never_comes_is_filled_from_the_store() -> None:
    async def scenario(store: ScriptedStore, hub: WatchHub, sub: Subscription) -> None:
        store.send(ChangeEvent(MAILBOX, 10))
        await _settle()
        ticket = hub.write_started(USER)
        hub.write_ended(ticket, [_flags(12, 3, after=11)], certain=True)  # modseq 11 is lost
        await trio.sleep(GAP_SECONDS * 2)
        assert store.opened == [10, 10]
        store.send(ChangeEvent(MAILBOX, 12, added=(MessageMeta(9, 11, ()),)))
        await _settle()
        assert _received(sub) == [12]

    _run(scenario)


def test_an_own_write_whose_turn_it_is_reaches_the_subscribers_before_write_ended_returns() -> None:
    """Nothing held before it and no \\Recent to claim: no scheduling round of the feed's
    task between the write's answer and its session's reply (issue 13)."""

    async def scenario(store: ScriptedStore, hub: WatchHub, sub: Subscription) -> None:
        store.send(ChangeEvent(MAILBOX, 10))
        await _settle()
        ticket = hub.write_started(USER)
        hub.write_ended(ticket, [_flags(11, 3, after=10), _added(12, 10, after=11)], certain=True)
        assert _received(sub) == [11, 12]  # no await in between
        ticket = hub.write_started(USER)
        hub.write_ended(ticket, [_flags(14, 3, after=13)], certain=True)  # modseq 13 is on its way
        assert _received(sub) == []
        store.send(_flags(13, 4))
        await _settle()
        assert _received(sub) == [13, 14]

    _run(scenario)


def test_own_new_mail_a_read_write_peer_must_claim_as_recent_waits_for_the_claim() -> None:
    """Mail this process added that no session here claimed (another session's APPEND to a
    mailbox it has not selected): the feed's task claims its \\Recent for the read-write
    subscriber before delivering it, as for other writers' mail."""
    claims: list[int] = []

    class ClaimingStore(ScriptedStore):
        async def claim_recent(self, user: str, mailbox_id: int, up_to_uid: int) -> tuple[int, int]:
            claims.append(up_to_uid)
            await trio.sleep(0.1)
            return 10, up_to_uid

    async def main() -> None:
        store = ClaimingStore()
        async with trio.open_nursery() as nursery:
            hub = WatchHub(store, nursery, linger=0)
            sub = hub.subscribe(USER, MAILBOX, 10, last_uid=9, claims_recent=True)
            await _settle()
            store.send(ChangeEvent(MAILBOX, 10))
            await _settle()
            ticket = hub.write_started(USER)
            hub.write_ended(ticket, [_added(11, 10, after=10)], certain=True)
            assert _received(sub) == []  # the claim first
            await trio.sleep(0.2)
            assert claims == [11] and _received(sub) == [11] and sub.recent == {10}
            sub.writing = 1  # its own APPEND: it claims its mail itself
            ticket = hub.write_started(USER)
            hub.write_ended(ticket, [_added(12, 11, after=11)], certain=True)
            assert _received(sub) == [12] and claims == [11]
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_watch_events_without_own_writes_pass_straight_through() -> None:
    async def scenario(store: ScriptedStore, hub: WatchHub, sub: Subscription) -> None:
        store.send(ChangeEvent(MAILBOX, 10))
        for modseq in range(11, 21):
            store.send(_added(modseq, modseq - 1))
        await _settle()
        assert _received(sub) == list(range(11, 21))

    _run(scenario)


def test_a_watch_the_store_cut_off_for_falling_behind_is_reopened_not_ended() -> None:
    """The store ends a Watch it queued too much for (RESOURCE_EXHAUSTED "watch: ..."): the hub
    reopens it from what it delivered; its subscribers notice nothing but the catch-up."""

    async def scenario(store: ScriptedStore, hub: WatchHub, sub: Subscription) -> None:
        store.send(ChangeEvent(MAILBOX, 10))
        store.send(_added(11, 10))
        await _settle()
        assert _received(sub) == [11]
        store.fail(StoreError(StoreErrorKind.FELL_BEHIND, "watch: this stream fell more than 1000 events behind"))
        await _settle()
        assert store.opened == [10, 11] and hub.resubscriptions == 1
        store.send(ChangeEvent(MAILBOX, 30, added=tuple(MessageMeta(u, 30, ()) for u in range(11, 30))))
        await _settle()
        assert _received(sub) == [30] and not sub.failed and hub.active_feeds == 1

    _run(scenario)


def test_a_watch_that_fails_otherwise_still_ends_and_tells_the_subscribers() -> None:
    async def scenario(store: ScriptedStore, hub: WatchHub, sub: Subscription) -> None:
        store.send(ChangeEvent(MAILBOX, 10))
        await _settle()
        store.fail(StoreError(StoreErrorKind.UNAVAILABLE, "the store is shutting down"))
        await _settle()
        assert store.opened == [10] and sub.failed and hub.active_feeds == 0

    _run(scenario)


def test_a_subscriber_past_its_buffer_goes_stale_keeps_only_the_newest_and_resyncs_from_the_store() -> None:
    async def scenario(store: ScriptedStore, hub: WatchHub, sub: Subscription) -> None:
        store.send(ChangeEvent(MAILBOX, 10))
        for modseq in range(11, 18):
            store.send(_added(modseq, modseq - 1))
        await _settle()
        assert sub.stale and hub.active_feeds == 1  # not cut off
        # Dropped at each overflow: what is queued is what came after the last one.
        assert _received(sub) == [17]
        got: list[ChangeEvent | None] = []

        async def resync() -> None:
            got.append(await hub.resync(sub, 12))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(resync)
            await _settle()
            assert store.opened == [10, 12]
            assert not _stale(sub)  # cleared as the resync starts
            catch_up = ChangeEvent(MAILBOX, 17, added=tuple(MessageMeta(u, u + 1, ()) for u in range(12, 17)))
            store.send(catch_up)
        assert got == [catch_up] and hub.resyncs == 1
        store.send(_added(18, 17), stream=0)  # the shared feed goes on
        await _settle()
        assert _received(sub) == [18]

    _run(scenario, buffer=3)
