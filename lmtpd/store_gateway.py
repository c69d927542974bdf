"""MailDrop over the store's local write socket when beside it, else over gRPC.

Beside the store (`--store-data`), each append is one WriteRequest on the
store's local write socket (store/local_writes_client.py: one connection per
process, shared by every LMTP connection, so their appends still share group
commits), sent and answered inside the trio thread: no gRPC thread and no
hand-off into trio on the way. A message whose request would not fit the
socket's frame limit, and every append while the socket cannot be reached
(missing, refused: gRPC for LocalWrites' RETRY_SECONDS, then the socket
again), goes over gRPC as below.

Over gRPC each LMTP connection gets one AppendPipeline stream, opened at its
first delivery and kept for the life of the connection: a delivery is then one
stream message out and one back, instead of a fresh call, and the store can
fold the appends of many connections into one fsync (group commit). Requests
go through a bounded queue.Queue that gRPC's own thread drains, so a 20 MiB
message is never queued whole; replies are read with a blocking `next()` in
a worker thread.

Both carry the same AppendHeader (`_append_header`: epoch, folder, delivery
identity, delivery-log line, settings revision) and the store treats them
alike (store/write_stream.py `submit`, store/servicer.py AppendPipeline: the
same `submit_append`, acknowledged after fsync). Every append carries the
epoch this process was started with; it is never refreshed here (a deposed
lmtpd must stay fenced and answer 451).
"""

from __future__ import annotations

import contextlib
import logging
import math
import pathlib
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

import grpc
import trio

from lmtpd.delivery import DeliveryResult, MessageSource, Outcome, Recipient, Resolution
from lmtpd.delivery_identity import body_digest, delivery_identity
from lmtpd.errors import StoreConnectionLost
from lmtpd.resolution_cache import ResolutionCache
from mailha_api import store_pb2, store_pb2_grpc
from store.channel import PIECE, open_channel
from store.local_frames import MAX_FRAME, FrameError
from store.local_writes_client import RETRY_SECONDS, LocalWrites, LocalWritesLost, LocalWritesRefused

T = TypeVar("T")

log = logging.getLogger("mailha.lmtpd.store")

_QUEUE_DEPTH: Final = 16  # pieces in flight towards gRPC per connection (≤ 4 MiB)
_PUT_TIMEOUT: Final = 60.0
_UNARY_TIMEOUT: Final = 15.0
# A whole transaction's appends; well inside Postfix's lmtp_data_done_timeout
# (600 s), so the MTA hears 451 from us rather than timing out itself.
_DELIVERY_TIMEOUT: Final = 300.0
_INLINE_DIGEST: Final = 256 * 1024  # bodies up to this size are hashed (and read whole) in the trio thread
# Room left in a local frame for the request around the message bytes (the AppendHeader with its
# delivery-log line is far smaller); a request that still does not fit goes over gRPC.
_FRAME_ROOM: Final = 64 * 1024
_LOCAL_IN_FLIGHT: Final = 16 * 1024 * 1024  # bytes of one transaction's local writes awaiting replies


def outcome_for(code: grpc.StatusCode | int, details: str) -> Outcome:
    """The one translation of store status codes into delivery outcomes."""
    if isinstance(code, int):
        code = _STATUS_BY_VALUE.get(code, grpc.StatusCode.UNKNOWN)
    if code == grpc.StatusCode.OK:
        return Outcome.DELIVERED
    if code == grpc.StatusCode.NOT_FOUND:
        return Outcome.NO_SUCH_USER
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return Outcome.BAD_ADDRESS
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        if details.startswith("storage"):
            return Outcome.STORAGE_FULL
        return Outcome.TOO_BIG if details.startswith("size") else Outcome.OVER_QUOTA
    if code == grpc.StatusCode.ABORTED:  # only AppendHeader.settings_revision (store.user_settings)
        return Outcome.SETTINGS_CHANGED
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return Outcome.FENCED
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return Outcome.UNAVAILABLE
    return Outcome.FAILED


# AppendReply.error_code carries the numeric value of the status code.
_STATUS_BY_VALUE: Final = {status.value[0]: status for status in grpc.StatusCode}


def _rpc_outcome(exc: grpc.RpcError) -> tuple[Outcome, str]:
    code_fn = getattr(exc, "code", None)
    details_fn = getattr(exc, "details", None)
    code = code_fn() if code_fn is not None else grpc.StatusCode.UNKNOWN
    details = (details_fn() if details_fn is not None else "") or ""
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    return outcome_for(code, details), details or code.name


class _AppendPipeline:
    """One AppendPipeline call: requests in through a queue, replies in order.

    One thread per call reads the replies as they come and hands each to trio
    (`TrioToken.run_sync_soon`): a delivery then waits on a trio channel, not on
    a worker thread started for it (what trio.to_thread cost per delivery)."""

    def __init__(self, stub: store_pb2_grpc.MailStoreStub, limiter: trio.CapacityLimiter) -> None:
        self._requests: queue.Queue[store_pb2.AppendRequest | None] = queue.Queue(maxsize=_QUEUE_DEPTH)
        self._limiter = limiter
        self._call = stub.AppendPipeline(self._drain())
        self._send, self._receive = trio.open_memory_channel[store_pb2.AppendReply | StoreConnectionLost](math.inf)
        self._token = trio.lowlevel.current_trio_token()
        threading.Thread(target=self._read_replies, name="append-replies", daemon=True).start()

    def _drain(self) -> Iterator[store_pb2.AppendRequest]:
        while True:
            item = self._requests.get()
            if item is None:
                return
            yield item

    def _read_replies(self) -> None:
        """The reply stream, each reply handed to trio; its end or failure as StoreConnectionLost."""
        end: StoreConnectionLost
        try:
            for reply in self._call:
                if not self._hand_over(reply):
                    return
            end = StoreConnectionLost("append pipeline ended")
        except grpc.RpcError as exc:
            end = StoreConnectionLost(_rpc_outcome(exc)[1])
        self._hand_over(end)

    def _hand_over(self, item: store_pb2.AppendReply | StoreConnectionLost) -> bool:
        try:
            self._token.run_sync_soon(self._deliver_reply, item)
        except trio.RunFinishedError:
            return False
        return True

    def _deliver_reply(self, item: store_pb2.AppendReply | StoreConnectionLost) -> None:
        with contextlib.suppress(trio.ClosedResourceError):
            self._send.send_nowait(item)

    async def put(self, request: store_pb2.AppendRequest) -> None:
        try:
            self._requests.put_nowait(request)
        except queue.Full:
            try:
                await trio.to_thread.run_sync(self._put_blocking, request, limiter=self._limiter)
            except queue.Full:
                raise StoreConnectionLost("append pipeline stalled") from None

    def _put_blocking(self, request: store_pb2.AppendRequest) -> None:
        self._requests.put(request, timeout=_PUT_TIMEOUT)

    async def reply(self) -> store_pb2.AppendReply:
        try:
            item = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StoreConnectionLost("append pipeline closed") from None
        if isinstance(item, StoreConnectionLost):
            self._send.close()  # nothing follows the end
            raise item
        return item

    def close(self) -> None:
        # Cancelling ends the reply stream, and with it the reading thread.
        self._call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leaves Call.cancel untyped
        self._send.close()
        try:
            self._requests.put_nowait(None)
        except queue.Full:
            pass


def _result(error_code: int, error_message: str, reply: store_pb2.AppendReply | None) -> DeliveryResult:
    """One append's outcome from the store's answer (either transport's)."""
    if error_code:
        return DeliveryResult(outcome_for(error_code, error_message), detail=error_message)
    if reply is None:
        return DeliveryResult(Outcome.FAILED, detail="the store answered an append with no reply")
    detail = "already delivered (a retry)" if reply.duplicate else ""
    return DeliveryResult(Outcome.DELIVERED, uid=reply.uid, detail=detail)


def _whole(body: MessageSource) -> bytes:
    return b"".join(body.pieces(PIECE))


def _local_request(header: store_pb2.AppendHeader, data: bytes) -> store_pb2.WriteRequest:
    """One append as a local write, built in place (an AppendRequest made first and then
    given to WriteRequest(append=...) would copy the message once more)."""
    request = store_pb2.WriteRequest()
    append = request.append
    append.header.CopyFrom(header)
    append.data = data
    append.last = True
    return request


class _NotSent:
    """A local write that never left (no connection, or too big for a frame): it goes over gRPC."""


NOT_SENT: Final = _NotSent()


@dataclass
class _Appends:
    """One transaction's appends on their way: a header and trace prefix per recipient, the
    body they share, and each one's result as it comes (NOT_SENT until sent and answered)."""

    headers: list[store_pb2.AppendHeader]
    prefixes: Sequence[bytes]
    body: MessageSource
    deadline: float  # trio.current_time() by which every reply is in
    results: list[DeliveryResult | _NotSent]


class GrpcSession:
    def __init__(self, drop: GrpcMailDrop) -> None:
        self._drop = drop
        self._pipeline: _AppendPipeline | None = None

    async def resolve(self, address: str) -> Resolution:
        cached = self._drop.resolutions.get(address)
        if cached is not None:
            return Resolution(Outcome.DELIVERED, user=cached)
        request = store_pb2.ResolveAddressRequest(address=address)
        try:
            info = await self._drop.call(self._drop.stub.ResolveAddress, request)
        except grpc.RpcError as exc:
            outcome, detail = _rpc_outcome(exc)
            return Resolution(outcome, detail=detail)
        self._drop.resolutions.put(address, info.user)
        return Resolution(Outcome.DELIVERED, user=info.user)

    async def deliver(
        self, recipients: Sequence[Recipient], prefixes: Sequence[bytes], body: MessageSource
    ) -> list[DeliveryResult]:
        deadline = trio.current_time() + _DELIVERY_TIMEOUT
        # Hashing a small body costs microseconds: a worker thread would cost more.
        if body.size <= _INLINE_DIGEST:
            digest = body_digest(body)
        else:
            digest = await trio.to_thread.run_sync(body_digest, body)
        headers = [
            self._append_header(recipient, prefix, body, delivery_identity(recipient.user, prefix, digest))
            for recipient, prefix in zip(recipients, prefixes, strict=True)
        ]
        appends = _Appends(headers, prefixes, body, deadline, [NOT_SENT] * len(recipients))
        local = self._drop.local_writes
        if (
            local is not None
            and local.ready()
            and body.size + max(map(len, prefixes), default=0) + _FRAME_ROOM <= MAX_FRAME
        ):
            await self._over_socket(local, appends)
        rest = [i for i, result in enumerate(appends.results) if isinstance(result, _NotSent)]
        if rest:
            await self._over_pipeline(rest, appends)
        done = [result for result in appends.results if isinstance(result, DeliveryResult)]
        assert len(done) == len(recipients)
        return done

    def _append_header(
        self, recipient: Recipient, prefix: bytes, body: MessageSource, identity: bytes
    ) -> store_pb2.AppendHeader:
        header = store_pb2.AppendHeader(
            epoch=self._drop.epoch,
            user=recipient.user,
            mailbox=recipient.mailbox,
            size=len(prefix) + body.size,
            delivery_id=identity,
        )
        if recipient.settings_revision:
            header.settings_revision = recipient.settings_revision  # applied atomically with the append
        if recipient.log is not None:
            header.delivery_log.CopyFrom(recipient.log)  # logged in the append's own transaction
        return header

    async def _over_socket(self, local: LocalWrites, appends: _Appends) -> None:
        """Each recipient's append as one local write; those never sent stay NOT_SENT."""
        body, headers, prefixes, results = appends.body, appends.headers, appends.prefixes, appends.results
        data = _whole(body) if body.size <= _INLINE_DIGEST else await trio.to_thread.run_sync(_whole, body)
        answered = [False] * len(headers)

        async def one(i: int) -> None:
            results[i] = await self._write_local(local, _local_request(headers[i], prefixes[i] + data))
            answered[i] = True

        with trio.move_on_at(appends.deadline):
            if len(headers) == 1:
                await one(0)  # the common case: no nursery, no task, no limiter (its checkpoint is a round)
            else:
                # A task holds its request (the whole message) until answered: bound the bytes in flight.
                limiter = trio.CapacityLimiter(max(1, _LOCAL_IN_FLIGHT // (len(data) + _FRAME_ROOM)))

                async def limited(i: int) -> None:
                    async with limiter:
                        await one(i)

                async with trio.open_nursery() as nursery:
                    for i in range(len(headers)):
                        nursery.start_soon(limited, i)
        for i, done in enumerate(answered):
            if not done:  # sent, or about to be: whether it committed is unknown, so no second try
                results[i] = DeliveryResult(Outcome.UNAVAILABLE, detail="store did not answer in time")

    async def _write_local(self, local: LocalWrites, request: store_pb2.WriteRequest) -> DeliveryResult | _NotSent:
        try:
            reply = await local.write(request)
        except LocalWritesRefused as exc:
            log.warning("delivering over gRPC for %.0f s: %s", RETRY_SECONDS, exc)
            return NOT_SENT
        except FrameError:
            return NOT_SENT  # larger than a frame after all: the pipeline streams it in pieces
        except LocalWritesLost as exc:
            # What was in flight is unknown: a temporary failure makes the MTA retry (the
            # retry is recognised by its delivery identity if this one did commit).
            return DeliveryResult(Outcome.UNAVAILABLE, detail=str(exc))
        append = reply.append if reply.WhichOneof("reply") == "append" else None
        return _result(reply.error_code, reply.error_message, append)

    async def _over_pipeline(self, which: Sequence[int], appends: _Appends) -> None:
        if self._pipeline is None:
            self._pipeline = _AppendPipeline(self._drop.stub, self._drop.limiter)
        pipeline = self._pipeline
        results = appends.results
        try:
            with trio.fail_at(appends.deadline):
                for i in which:
                    await self._send_message(pipeline, appends.headers[i], appends.prefixes[i], appends.body)
                for i in which:
                    reply = await pipeline.reply()
                    results[i] = _result(reply.error_code, reply.error_message, reply)
        except (StoreConnectionLost, trio.TooSlowError) as exc:
            # What was in flight is unknown: a temporary failure makes the MTA
            # retry (a possible duplicate beats a lost message).
            pipeline.close()
            self._pipeline = None
            detail = str(exc) or "store did not answer in time"
            for i in which:
                results[i] = DeliveryResult(Outcome.UNAVAILABLE, detail=detail)

    async def _send_message(
        self, pipeline: _AppendPipeline, header: store_pb2.AppendHeader, prefix: bytes, body: MessageSource
    ) -> None:
        pieces = body.pieces(PIECE)
        current = prefix + next(pieces, b"")
        first: store_pb2.AppendHeader | None = header
        for piece in pieces:
            await pipeline.put(store_pb2.AppendRequest(header=first, data=current))
            first, current = None, piece
        await pipeline.put(store_pb2.AppendRequest(header=first, data=current, last=True))

    async def aclose(self) -> None:
        if self._pipeline is not None:
            self._pipeline.close()
            self._pipeline = None


class GrpcMailDrop:
    def __init__(
        self,
        address: str,
        epoch: int,
        *,
        max_threads: int = 256,
        resolve_ttl: float = 0.0,
        store_data: pathlib.Path | None = None,
    ) -> None:
        self.epoch = epoch
        self.resolutions = ResolutionCache(resolve_ttl)
        self.channel = open_channel(address)
        self.stub = store_pb2_grpc.MailStoreStub(self.channel)
        # Each connection may hold a thread waiting for its next reply.
        self.limiter = trio.CapacityLimiter(max_threads)
        # Beside the store: appends over its local write socket, one connection for the process.
        self.local_writes = LocalWrites(store_data) if store_data is not None else None

    def session(self) -> GrpcSession:
        return GrpcSession(self)

    async def call(self, method: Callable[..., T], request: object) -> T:
        return await trio.to_thread.run_sync(
            lambda: method(request, timeout=_UNARY_TIMEOUT), limiter=self.limiter, abandon_on_cancel=True
        )

    def close_local_writes(self) -> None:
        """Inside trio (its socket is a trio socket), before the run ends."""
        if self.local_writes is not None:
            self.local_writes.close()

    def close(self) -> None:
        self.channel.close()
