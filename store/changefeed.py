"""In-process pub/sub of committed changes, per mailbox.

The committer publishes after each durable commit; each Watch stream holds a
Subscription with a bounded queue. A subscriber that falls too far behind is
cut off (its stream ends with RESOURCE_EXHAUSTED) rather than slowing the
committer or growing without bound; the client resubscribes with
since_modseq and catches up from LMDB.

Feed tokens (issue 13). A front end names itself with a random token in the
metadata of both its Writes call and its Watch calls. The events of a write
that came with a token are left off the Watch subscriptions with that token:
the writer gets them in its write's reply (`Origin.events`) and fans them out
to its own sessions, instead of the store sending each change back to the
process that made it, racing the reply. Every other subscriber (another
process, another node, WatchAccount) still gets every event.
"""

from __future__ import annotations

import queue
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from mailha_api import store_pb2

DEFAULT_QUEUE_LIMIT = 1000

# The call metadata naming a front end's feed token (Writes and Watch calls alike).
FEED_TOKEN_METADATA: Final = "mailha-feed-token"
_MAX_TOKEN: Final = 64


def feed_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """The feed token a call's metadata carries; "" without one (or with an oversized one)."""
    for key, value in metadata or ():
        if key == FEED_TOKEN_METADATA and isinstance(value, str) and valid_feed_token(value):
            return value
    return ""


def valid_feed_token(value: str) -> bool:
    return 0 < len(value) <= _MAX_TOKEN


# Messages (added, re-flagged, expunged) one write's reply carries in its events; a bigger
# write's further events go on every Watch as before (a reply must stay far below the 8 MiB
# gRPC message limit, and a STORE 1:* over a million messages commits in many pieces).
MAX_CARRIED: Final = 10_000


@dataclass(eq=False)
class Origin:
    """Who submitted a write over a Writes call with a feed token, and the events the write
    made (filled by the committer before the write's future resolves)."""

    token: str
    events: list[store_pb2.ChangeEvent] = field(default_factory=list)
    carried: int = 0  # messages in `events`

    def take(self, events: Sequence[store_pb2.ChangeEvent]) -> bool:
        """Carry `events` in the reply (True), or leave them to the Watch streams: no room."""
        size = sum(len(e.added) + len(e.flags) + len(e.expunged) for e in events)
        if self.carried + size > MAX_CARRIED:
            return False
        self.carried += size
        self.events.extend(events)
        return True


class Subscription:
    def __init__(self, mailbox_id: int, limit: int, user: str | None = None, token: str = "") -> None:
        self.mailbox_id = mailbox_id
        self.token = token  # a Watch of this front end: its own writes' events are not sent here
        self.user = user  # set: a whole account's events (WatchAccount), not one mailbox's
        # None wakes the reader up: the subscription was closed or overflowed. Bounded by
        # `publish` (at most `limit` events, then the None of close): a SimpleQueue's put is
        # C code with no Condition to notify, a third cheaper per event than queue.Queue's.
        self.queue: queue.SimpleQueue[store_pb2.ChangeEvent | None] = queue.SimpleQueue()
        self.limit = limit
        self.overflowed = False
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return  # one None is enough: the reader stops at the first
        self.closed = True
        self.queue.put_nowait(None)


class ChangeFeed:
    def __init__(self, queue_limit: int = DEFAULT_QUEUE_LIMIT) -> None:
        self._lock = threading.Lock()
        self._subs: dict[int, set[Subscription]] = defaultdict(set)
        self._user_subs: dict[str, set[Subscription]] = defaultdict(set)
        self._queue_limit = queue_limit
        self._closed = False

    def subscribe(self, mailbox_id: int, token: str = "") -> Subscription:
        sub = Subscription(mailbox_id, self._queue_limit, token=token)
        with self._lock:
            if self._closed:
                sub.close()
            else:
                self._subs[mailbox_id].add(sub)
        return sub

    def subscribe_user(self, user: str) -> Subscription:
        """Every event published with this `user` (all of the account's mailboxes)."""
        sub = Subscription(0, self._queue_limit, user)
        with self._lock:
            if self._closed:
                sub.close()
            else:
                self._user_subs[user].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub.user is not None:
                group = self._user_subs.get(sub.user)
                if group is not None:
                    group.discard(sub)
                    if not group:
                        del self._user_subs[sub.user]
                return
            subs = self._subs.get(sub.mailbox_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.mailbox_id]

    def subscriber_count(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._subs.values()) + sum(len(s) for s in self._user_subs.values())

    def publish(self, events: list[store_pb2.ChangeEvent], tokens: Sequence[str] = ()) -> None:
        """`tokens[i]`: the feed token of the write that made `events[i]` ("" or missing: none)."""
        overflowed: list[Subscription] = []
        with self._lock:
            for i, event in enumerate(events):
                token = tokens[i] if i < len(tokens) else ""
                for sub in (*self._subs.get(event.mailbox_id, ()), *self._user_subs.get(event.user, ())):
                    if sub.overflowed or (token and sub.token == token):
                        continue
                    if sub.queue.qsize() >= sub.limit:
                        sub.overflowed = True
                        overflowed.append(sub)
                        continue
                    sub.queue.put_nowait(event)
        for sub in overflowed:
            self.unsubscribe(sub)
            sub.close()

    def close_all(self) -> None:
        with self._lock:
            self._closed = True
            subs = [s for group in (*self._subs.values(), *self._user_subs.values()) for s in group]
            self._subs.clear()
            self._user_subs.clear()
        for sub in subs:
            sub.close()
