"""The account hub (NOTIFY's feed) with a subscriber that falls behind and a store that
cuts the stream off: the subscriber goes stale instead of being cut off, and the feed
is reopened, not ended (the session then resyncs: test_imap_watch_fell_behind)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable

import trio
import trio.testing

from imapd.account_hub import AccountHub, AccountSubscription
from imapd.errors import StoreError, StoreErrorKind
from imapd.store_client import ChangeEvent, MessageMeta
from imapd.store_fake import FakeStore

USER = "ann"


class ScriptedAccounts(FakeStore):
    """A store whose WatchAccount streams send what the test puts on them."""

    def __init__(self) -> None:
        super().__init__()
        self.streams: list[trio.MemorySendChannel[ChangeEvent | StoreError]] = []

    async def watch_account(self, user: str) -> AsyncGenerator[ChangeEvent, None]:
        send, receive = trio.open_memory_channel[ChangeEvent | StoreError](100)
        self.streams.append(send)
        async with receive:
            async for item in receive:
                if isinstance(item, StoreError):
                    raise item
                yield item

    def send(self, item: ChangeEvent | StoreError) -> None:
        self.streams[-1].send_nowait(item)


def _added(modseq: int) -> ChangeEvent:
    return ChangeEvent(3, modseq, added=(MessageMeta(modseq, modseq, ()),), user=USER)


def _queued(sub: AccountSubscription) -> list[ChangeEvent]:
    out = []
    while True:
        try:
            out.append(sub.receive.receive_nowait())
        except trio.WouldBlock:
            return out


def _stale(sub: AccountSubscription) -> bool:
    return sub.stale


def _run(scenario: Callable[[ScriptedAccounts, AccountHub, AccountSubscription], Awaitable[None]]) -> None:
    async def main() -> None:
        store = ScriptedAccounts()
        async with trio.open_nursery() as nursery:
            hub = AccountHub(store, nursery, buffer=3)
            sub = hub.subscribe(USER)
            await trio.testing.wait_all_tasks_blocked()
            await scenario(store, hub, sub)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_subscriber_past_its_buffer_goes_stale_and_gets_nothing_until_it_resynced() -> None:
    async def scenario(store: ScriptedAccounts, hub: AccountHub, sub: AccountSubscription) -> None:
        for modseq in range(1, 6):
            store.send(_added(modseq))
        await trio.testing.wait_all_tasks_blocked()
        assert _stale(sub) and not sub.failed and hub.open_feeds == 1
        queued = _queued(sub)
        assert [e.heartbeat for e in queued] == [True]  # its queue dropped; a wake-up left
        store.send(_added(6))
        await trio.testing.wait_all_tasks_blocked()
        assert _queued(sub) == []  # nothing while stale: the resync reads the store after it
        sub.resynced()
        store.send(_added(7))
        await trio.testing.wait_all_tasks_blocked()
        assert [e.modseq for e in _queued(sub)] == [7] and hub.resyncs == 1

    _run(scenario)


def test_a_stream_the_store_cut_off_is_reopened_and_every_subscriber_resyncs() -> None:
    async def scenario(store: ScriptedAccounts, hub: AccountHub, sub: AccountSubscription) -> None:
        store.send(_added(1))
        await trio.testing.wait_all_tasks_blocked()
        store.send(
            StoreError(StoreErrorKind.FELL_BEHIND, "watch_account: this stream fell more than 1000 events behind")
        )
        await trio.testing.wait_all_tasks_blocked()
        assert len(store.streams) == 2 and _stale(sub) and not sub.failed
        assert [e.heartbeat for e in _queued(sub)] == [True]

    _run(scenario)


def test_the_last_subscriber_leaving_after_it_fell_behind_ends_the_stream() -> None:
    async def scenario(store: ScriptedAccounts, hub: AccountHub, sub: AccountSubscription) -> None:
        for modseq in range(1, 6):
            store.send(_added(modseq))
        await trio.testing.wait_all_tasks_blocked()
        sub.close()
        await trio.testing.wait_all_tasks_blocked()
        assert hub.open_feeds == 0

    _run(scenario)
