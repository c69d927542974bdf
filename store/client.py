"""A small typed synchronous client of the store, for the admin CLI, the benchmark and tests.

Addresses: "unix:/path/store.sock" or "127.0.0.1:PORT". Writes take an
explicit epoch; without one the client uses the store's current epoch (fine
for operator one-shots, never for a long-running writer that must be fenced).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterable, Iterator
from types import TracebackType

import grpc

from mailha_api import settings_pb2_grpc, store_pb2, store_pb2_grpc

PIECE = 256 * 1024
ONE_REQUEST_LIMIT = 1024 * 1024  # above this, stream the append
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.max_send_message_length", 8 * 1024 * 1024),
]


class StoreClient:
    def __init__(self, address: str, timeout: float = 60.0) -> None:
        self.address = address
        self.timeout = timeout
        self.channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.stub = store_pb2_grpc.MailStoreStub(self.channel)
        self.settings = settings_pb2_grpc.SettingsStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> StoreClient:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    # ---- epochs -------------------------------------------------------------

    def epoch(self) -> int:
        return int(self.stub.GetEpoch(store_pb2.GetEpochRequest(), timeout=self.timeout).epoch)

    def writable_epoch(self, timeout: float = 30.0) -> int:
        """The epoch a writer may use once the store accepts writes.

        An HA agent starts its store with writes suspended and fences it after the floating
        address is claimed, so the first GetEpoch may answer 0 (or the previous epoch, not yet
        writable); a write at that epoch is refused as fenced. Waits (bounded) for the writable
        epoch; past the deadline returns what the store last said, and the write reports why.
        """
        deadline = time.monotonic() + timeout
        while True:
            reply = self.stub.GetEpoch(store_pb2.GetEpochRequest(), timeout=timeout, wait_for_ready=True)
            if (reply.writable and reply.epoch > 0) or time.monotonic() > deadline:
                return int(reply.epoch)
            time.sleep(0.05)

    def _epoch(self, epoch: int | None) -> int:
        return self.epoch() if epoch is None else epoch

    def fence(self, epoch: int) -> int:
        return int(self.stub.Fence(store_pb2.FenceRequest(epoch=epoch), timeout=self.timeout).epoch)

    # ---- users --------------------------------------------------------------

    def create_user(
        self, name: str, password: str, *, quota: int = 0, epoch: int | None = None, default_mailboxes: bool = True
    ) -> store_pb2.UserInfo:
        req = store_pb2.CreateUserRequest(
            epoch=self._epoch(epoch),
            name=name,
            password=password,
            quota_bytes=quota,
            no_default_mailboxes=not default_mailboxes,
        )
        return self.stub.CreateUser(req, timeout=self.timeout)

    def add_address(self, address: str, user: str, *, epoch: int | None = None) -> None:
        self.stub.AddAddress(
            store_pb2.AddAddressRequest(epoch=self._epoch(epoch), address=address, user=user), timeout=self.timeout
        )

    def authenticate(self, name: str, password: str) -> str:
        reply = self.stub.Authenticate(
            store_pb2.AuthenticateRequest(name=name, password=password), timeout=self.timeout
        )
        return reply.user

    # ---- mailboxes ------------------------------------------------------------

    def select(self, user: str, mailbox: str) -> store_pb2.SelectReply:
        return self.stub.Select(store_pb2.SelectRequest(user=user, name=mailbox), timeout=self.timeout)

    def mailbox_id(self, user: str, mailbox: str) -> int:
        reply = self.stub.Status(store_pb2.StatusRequest(user=user, name=mailbox), timeout=self.timeout)
        return int(reply.mailbox_id)

    # ---- messages ---------------------------------------------------------------

    def append_bytes(
        self,
        user: str,
        mailbox: str,
        data: bytes,
        flags: Iterable[str] = (),
        epoch: int | None = None,
        *,
        internal_date: int = 0,
        mailbox_id: int = 0,
    ) -> store_pb2.AppendReply:
        header = store_pb2.AppendHeader(
            epoch=self._epoch(epoch),
            user=user,
            mailbox=mailbox,
            mailbox_id=mailbox_id,
            flags=list(flags),
            internal_date=internal_date,
            size=len(data),
        )
        if len(data) <= ONE_REQUEST_LIMIT:
            return self.stub.AppendOne(
                store_pb2.AppendRequest(header=header, data=data, last=True), timeout=self.timeout
            )
        return self.stub.Append(stream_message(header, data), timeout=self.timeout)

    def fetch_meta(self, user: str, mailbox_id: int, uid_set: str) -> list[store_pb2.MessageMeta]:
        req = store_pb2.FetchRequest(user=user, mailbox_id=mailbox_id, uid_set=uid_set)
        return [r.meta for r in self.stub.Fetch(req, timeout=self.timeout)]

    def fetch_body(self, user: str, mailbox_id: int, uid: int) -> bytes:
        req = store_pb2.FetchRequest(user=user, mailbox_id=mailbox_id, uid_set=str(uid), with_body=True)
        parts = [r.chunk.data for r in self.stub.Fetch(req, timeout=self.timeout) if r.HasField("chunk")]
        return b"".join(parts)


def stream_message(header: store_pb2.AppendHeader, data: bytes) -> Iterator[store_pb2.AppendRequest]:
    """The requests of one streamed message: header on the first, last=true on the final piece."""
    view = memoryview(data)
    total = len(view)
    at = 0
    first = True
    while True:
        piece = bytes(view[at : at + PIECE])
        at += len(piece)
        req = store_pb2.AppendRequest(data=piece, last=at >= total)
        if first:
            req.header.CopyFrom(header)
            first = False
        yield req
        if at >= total:
            return


class AppendStream:
    """One AppendPipeline stream: `send` queues a message, `receive` returns replies in order.

    `append` is send + receive (one message in flight): the same durability
    and latency as a unary call, at a lower per-message cost. Keep several
    messages in flight with `send`/`receive` to let one stream fill a group
    commit batch.
    """

    def __init__(self, client: StoreClient) -> None:
        self._requests: queue.SimpleQueue[store_pb2.AppendRequest | None] = queue.SimpleQueue()
        self._replies: Iterator[store_pb2.AppendReply] = iter(
            client.stub.AppendPipeline(iter(self._requests.get, None))
        )
        self.in_flight = 0

    def send(self, header: store_pb2.AppendHeader, data: bytes) -> None:
        if len(data) <= ONE_REQUEST_LIMIT:
            self._requests.put(store_pb2.AppendRequest(header=header, data=data, last=True))
        else:
            for req in stream_message(header, data):
                self._requests.put(req)
        self.in_flight += 1

    def receive(self) -> store_pb2.AppendReply:
        reply: store_pb2.AppendReply = next(self._replies)
        self.in_flight -= 1
        return reply

    def append(self, header: store_pb2.AppendHeader, data: bytes) -> store_pb2.AppendReply:
        self.send(header, data)
        return self.receive()

    def close(self) -> None:
        self._requests.put(None)
        for _ in self._replies:
            pass


def wait_for_store(address: str, timeout: float = 30.0) -> int:
    """Block until the store answers GetEpoch; return the stored epoch."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with grpc.insecure_channel(address) as channel:
                stub = store_pb2_grpc.MailStoreStub(channel)
                reply = stub.GetEpoch(store_pb2.GetEpochRequest(), timeout=2.0)
                return int(reply.epoch)
        except grpc.RpcError as exc:
            last = exc
            time.sleep(0.1)
    raise RuntimeError(f"store at {address} did not come up within {timeout:.0f} s: {last}")
