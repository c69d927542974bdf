"""Appending imported messages to the store, many in flight at once.

One AppendPipeline call per folder: gRPC's thread pulls requests from a
generator that reads the source, the caller's thread reads the replies in
order. At most `window` messages and `window_bytes` bytes are between the two,
so the store can group-commit them while memory stays bounded. A message counts as
imported only when its reply says so (the store replies after fsync); only
then is the source told (`acknowledged`), which is what resumable sources
record.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

import grpc

from importer.errors import ImportFailure
from importer.source import SourceMessage
from mailha_api import store_pb2
from store.channel import PIECE
from store.client import StoreClient

# Appends in flight on the stream: as many as the store keeps queued for one stream
# (store.servicer.PIPELINE_IN_FLIGHT), so a group commit takes up to 256 messages and
# the committer rarely waits for the next request; bounded in bytes too, since the
# importer holds every unanswered message in memory.
WINDOW: Final = 256
WINDOW_BYTES: Final = 64 * 1024 * 1024


@dataclass(frozen=True)
class AppendOutcome:
    ok: bool
    uid: int = 0
    error: str = ""


def _requests(header: store_pb2.AppendHeader, data: bytes) -> Iterator[store_pb2.AppendRequest]:
    view = memoryview(data)
    at = 0
    first: store_pb2.AppendHeader | None = header
    while True:
        piece = bytes(view[at : at + PIECE])
        at += len(piece)
        yield store_pb2.AppendRequest(header=first, data=piece, last=at >= len(view))
        first = None
        if at >= len(view):
            return


class _InFlight:
    """At most `count` messages and `size` bytes sent but not yet answered (one message always may go)."""

    def __init__(self, count: int, size: int) -> None:
        self.max_count, self.max_size = count, size
        self.count = self.size = 0
        self.cond = threading.Condition()

    def take(self, size: int, stop: threading.Event) -> bool:
        """Wait for room for a message of `size` bytes; False if `stop` was set meanwhile."""
        with self.cond:
            while self.count and (self.count >= self.max_count or self.size + size > self.max_size):
                if stop.is_set():
                    return False
                self.cond.wait(0.5)
            self.count += 1
            self.size += size
            return not stop.is_set()

    def give(self, size: int) -> None:
        with self.cond:
            self.count -= 1
            self.size -= size
            self.cond.notify()


class StoreSink:
    def __init__(
        self, client: StoreClient, user: str, epoch: int, *, window: int = WINDOW, window_bytes: int = WINDOW_BYTES
    ) -> None:
        self.client = client
        self.user = user
        self.epoch = epoch
        self.window = window
        self.window_bytes = window_bytes

    def check_user(self) -> None:
        try:
            self.client.stub.GetUser(store_pb2.GetUserRequest(name=self.user), timeout=self.client.timeout)
        except grpc.RpcError as exc:
            raise ImportFailure(f"user {self.user!r}: {_details(exc)}") from exc

    def ensure_mailbox(self, name: str) -> None:
        if name.upper() == "INBOX":
            return
        request = store_pb2.CreateMailboxRequest(epoch=self.epoch, user=self.user, name=name)
        try:
            self.client.stub.CreateMailbox(request, timeout=self.client.timeout)
        except grpc.RpcError as exc:
            if _code(exc) != grpc.StatusCode.ALREADY_EXISTS:
                raise ImportFailure(f"cannot create mailbox {name!r}: {_details(exc)}") from exc
        # Subscribed, so that clients showing only subscribed folders show the migrated ones.
        subscribe = store_pb2.SubscribeRequest(epoch=self.epoch, user=self.user, name=name, subscribed=True)
        try:
            self.client.stub.Subscribe(subscribe, timeout=self.client.timeout)
        except grpc.RpcError as exc:
            raise ImportFailure(f"cannot subscribe mailbox {name!r}: {_details(exc)}") from exc

    def append_all(
        self, mailbox: str, messages: Iterator[SourceMessage], done: Callable[[SourceMessage, AppendOutcome], None]
    ) -> None:
        """Append every message; `done` is called in source order as replies arrive."""
        inflight: collections.deque[SourceMessage] = collections.deque()
        slots = _InFlight(self.window, self.window_bytes)
        stop = threading.Event()
        source_error: list[BaseException] = []

        def requests() -> Iterator[store_pb2.AppendRequest]:
            try:
                for message in messages:
                    if not slots.take(len(message.data), stop):
                        return
                    header = store_pb2.AppendHeader(
                        epoch=self.epoch,
                        user=self.user,
                        mailbox=mailbox,
                        flags=list(message.flags),
                        internal_date=message.internal_date,
                        tz_offset_minutes=message.tz_offset_minutes,
                        size=len(message.data),
                    )
                    inflight.append(message)
                    yield from _requests(header, message.data)
            except Exception as exc:  # the source failed: end the stream, report after the replies
                source_error.append(exc)

        call = self.client.stub.AppendPipeline(requests())
        try:
            for reply in call:
                message = inflight.popleft()
                slots.give(len(message.data))
                if reply.error_code:
                    done(message, AppendOutcome(False, error=reply.error_message or f"code {reply.error_code}"))
                else:
                    done(message, AppendOutcome(True, uid=reply.uid))
        except grpc.RpcError as exc:
            raise ImportFailure(f"store: {_details(exc)}") from exc
        finally:
            stop.set()
        if source_error:
            raise ImportFailure(f"reading the source failed: {source_error[0]}") from source_error[0]
        if inflight:
            raise ImportFailure(f"store ended the stream with {len(inflight)} messages unanswered")


def _code(exc: grpc.RpcError) -> grpc.StatusCode:
    code = getattr(exc, "code", None)
    value = code() if code is not None else None
    return value if isinstance(value, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def _details(exc: grpc.RpcError) -> str:
    details = getattr(exc, "details", None)
    text = details() if details is not None else None
    return str(text or _code(exc).name)
