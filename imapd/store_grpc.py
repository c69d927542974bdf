"""The store client over gRPC: the sync stub driven from trio.

Unary calls complete on gRPC's thread and wake their task through the trio
token. Writes (APPEND of one message up to 4 MiB, STORE, EXPUNGE, COPY, MOVE,
\\Recent claims) go over one long-lived Writes stream per client instead of a
unary call each (store/write_stream_client.py), falling back to the unary
calls against a store without it. Beside the store (a LocalReader), writes go
over the store's local write socket instead (store/local_writes_client.py), and over
the Writes stream whenever that socket cannot be reached. Server streams (Fetch, Watch) are drained
by a plain thread that hands batches to trio through a memory channel with
`trio.from_thread`; leaving the consumer cancels the call, which ends the
thread. Every write carries the epoch this client was built with, never
refreshed (a deposed writer stays fenced).
"""

from __future__ import annotations

import array
import logging
import queue
import secrets
import sys
import threading
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, Final, TypeVar

import grpc
import lmdb
import trio

from imapd.errors import StoreError, StoreErrorKind
from imapd.store_client import (
    AppendResult,
    AppendSpec,
    ChangeEvent,
    CopyResult,
    ExpungeResult,
    FetchedMessage,
    FetchRequest,
    FlagMode,
    IndexColumns,
    IndexQuery,
    MailboxInfo,
    MailboxStatus,
    MessageFacts,
    MessageMeta,
    MetadataRefusal,
    OwnWrites,
    QuotaInfo,
    SelectResult,
    StoreFlagsResult,
)
from mailha_api import mailbox_index_pb2, mailbox_index_pb2_grpc, store_pb2, store_pb2_grpc
from store import errors as store_errors
from store.changefeed import FEED_TOKEN_METADATA
from store.channel import ONE_REQUEST_LIMIT, PIECE, open_channel
from store.local_writes_client import RETRY_SECONDS, LocalWrites, LocalWritesLost, LocalWritesRefused
from store.reader import LocalReader
from store.write_stream_client import StreamEnded, WriteStream

T = TypeVar("T")
log = logging.getLogger("imapd.store")

_UNARY_TIMEOUT: Final = 30.0
# A fetch batch handed to trio at once: bounded in count and bytes.
_BATCH_MESSAGES: Final = 64
_BATCH_BYTES: Final = 1024 * 1024
# Selections up to this many UIDs try the unary FetchBatch first (the store's bound is 2000).
_UNARY_FETCH_MAX: Final = 1000

_CODE_TO_KIND: Final = {
    grpc.StatusCode.NOT_FOUND: StoreErrorKind.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: StoreErrorKind.ALREADY_EXISTS,
    grpc.StatusCode.INVALID_ARGUMENT: StoreErrorKind.INVALID,
    grpc.StatusCode.UNAUTHENTICATED: StoreErrorKind.UNAUTHENTICATED,
    grpc.StatusCode.UNAVAILABLE: StoreErrorKind.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: StoreErrorKind.UNAVAILABLE,
    grpc.StatusCode.CANCELLED: StoreErrorKind.UNAVAILABLE,
}


# The unary RPC of each kind of write, for a store without the Writes stream.
_UNARY_WRITES: Final = {
    "append": "AppendOne",
    "store_flags": "StoreFlags",
    "expunge": "Expunge",
    "copy": "Copy",
    "move": "Move",
    "claim_recent": "ClaimRecent",
}
_STATUS_BY_VALUE: Final = {code.value[0]: code for code in grpc.StatusCode}


def _code(exc: grpc.RpcError) -> grpc.StatusCode:
    # The sync stub raises RpcError objects that are also grpc.Call.
    get_code = getattr(exc, "code", None)
    code = get_code() if get_code is not None else None
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def store_error(exc: grpc.RpcError) -> StoreError:
    """A failed call as a StoreError."""
    code = _code(exc)
    get_details = getattr(exc, "details", None)
    return _error(code, (get_details() if get_details is not None else None) or str(code))


def local_error(exc: store_errors.StoreError) -> StoreError:
    """A failed local read (`store.reader`) as the same StoreError the gRPC call would give:
    the store's error kinds are named after the gRPC status each becomes."""
    return _error(grpc.StatusCode[exc.kind.value], exc.message)


def _error(code: grpc.StatusCode, details: str) -> StoreError:
    """The one translation of gRPC status codes into StoreError kinds."""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        if details.startswith("storage"):
            kind = StoreErrorKind.STORAGE_FULL
        elif details.startswith("size"):
            kind = StoreErrorKind.TOO_BIG
        elif details.startswith("limit"):
            kind = StoreErrorKind.LIMIT
        elif details.startswith("quota"):
            kind = StoreErrorKind.OVER_QUOTA
        elif details.startswith("watch"):
            kind = StoreErrorKind.FELL_BEHIND  # store.message_ops: the Watch's queue overflowed
        else:
            # gRPC's own RESOURCE_EXHAUSTED (an oversized message or trailer) is no quota matter.
            kind = StoreErrorKind.INTERNAL
    elif code == grpc.StatusCode.FAILED_PRECONDITION:
        kind = StoreErrorKind.FENCED if "fenced" in details else StoreErrorKind.PRECONDITION
    else:
        kind = _CODE_TO_KIND.get(code, StoreErrorKind.INTERNAL)
    return StoreError(kind, details)


def _status(pb: store_pb2.MailboxStatus) -> MailboxStatus:
    return MailboxStatus(
        messages=pb.messages,
        unseen=pb.unseen,
        uidnext=pb.uidnext,
        uidvalidity=pb.uidvalidity,
        highestmodseq=pb.highestmodseq,
        size=pb.size,
        deleted=pb.deleted,
        recent=pb.recent,
    )


def _info(pb: store_pb2.MailboxInfo) -> MailboxInfo:
    return MailboxInfo(
        name=pb.name,
        mailbox_id=pb.mailbox_id,
        special_use=pb.special_use,
        subscribed=pb.subscribed,
        has_children=pb.has_children,
        status=_status(pb.status) if pb.HasField("status") else None,
        noselect=pb.noselect,
        nonexistent=pb.nonexistent,
    )


def _meta(pb: store_pb2.MessageMeta) -> MessageMeta:
    return MessageMeta(
        uid=pb.uid,
        modseq=pb.modseq,
        flags=tuple(pb.flags),
        internal_date=pb.internal_date,
        tz_offset_minutes=pb.tz_offset_minutes,
        size=pb.size,
        header=pb.header if pb.header else None,
        facts=MessageFacts(pb.save_date, pb.body_id, pb.preview if pb.has_preview else None) if pb.body_id else None,
    )


def _event(pb: store_pb2.ChangeEvent, *, own: bool = False) -> ChangeEvent:
    """`own`: from a write's reply, where `after_modseq` means something (not on Watch)."""
    return ChangeEvent(
        mailbox_id=pb.mailbox_id,
        modseq=pb.modseq,
        added=tuple(map(_meta, pb.added)),
        expunged=tuple(pb.expunged),
        flags=tuple(map(_meta, pb.flags)),
        deleted=pb.deleted,
        renamed=pb.renamed,
        heartbeat=pb.heartbeat,
        user=pb.user,
        created=pb.created,
        name=pb.name,
        old_name=pb.old_name,
        subscribed=pb.subscribed,
        unsubscribed=pb.unsubscribed,
        after_modseq=pb.after_modseq if own else 0,
    )


def _uid_count(uid_set: str) -> int:
    """How many UIDs a set in `format_uids` form names (a huge number for `*` or junk)."""
    if uid_set.isdigit():
        return 1  # one UID (FETCH 60): every FETCH asks this, the split below is 1.5 us
    total = 0
    for part in uid_set.split(","):
        low, sep, high = part.partition(":")
        if not low.isdigit() or (sep and not high.isdigit()):
            return 1 << 32
        total += abs(int(high) - int(low)) + 1 if sep else 1
    return total


class _StreamPump:
    """Drains a server-streaming call in a thread into a trio memory channel."""

    def __init__(self, call: Iterable[T], convert: Callable[[Iterator[T]], Iterator[list[object]]]) -> None:
        self._call = call
        self._convert = convert
        self._send, self.receive = trio.open_memory_channel[list[object] | StoreError](4)
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.Thread(target=self._run, name="imapd-grpc-stream", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _deliver(self, item: list[object] | StoreError) -> bool:
        try:
            trio.from_thread.run(self._send.send, item, trio_token=self._token)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.RunFinishedError, trio.Cancelled):
            return False
        return True

    def _run(self) -> None:
        try:
            for batch in self._convert(iter(self._call)):
                if not self._deliver(batch):
                    self.cancel()
                    return
        except grpc.RpcError as exc:
            if _code(exc) != grpc.StatusCode.CANCELLED:
                self._deliver(store_error(exc))
        finally:
            try:
                trio.from_thread.run_sync(self._send.close, trio_token=self._token)
            except trio.RunFinishedError:
                pass

    def cancel(self) -> None:
        cancel = getattr(self._call, "cancel", None)
        if cancel is not None:
            cancel()


def _fetch_batches(responses: Iterator[store_pb2.FetchResponse]) -> Iterator[list[object]]:
    batch: list[object] = []
    batch_bytes = 0
    meta: MessageMeta | None = None
    body: list[bytes] | None = None
    for resp in responses:
        if resp.HasField("meta"):
            if meta is not None:
                batch.append(FetchedMessage(meta, tuple(body) if body is not None else None))
            meta = _meta(resp.meta)
            body = None
            batch_bytes += len(resp.meta.header)
        else:
            if body is None:
                body = []
            body.append(resp.chunk.data)
            batch_bytes += len(resp.chunk.data)
        if len(batch) >= _BATCH_MESSAGES or batch_bytes >= _BATCH_BYTES:
            yield batch
            batch, batch_bytes = [], 0
    if meta is not None:
        batch.append(FetchedMessage(meta, tuple(body) if body is not None else None))
    if batch:
        yield batch


def _column(code: str, raw: bytes) -> array.array[int]:
    """A little-endian column of the MailboxIndex API as an array of this machine."""
    values = array.array(code)
    values.frombytes(raw)
    if sys.byteorder == "big":
        values.byteswap()
    return values


def _columns(pb: mailbox_index_pb2.IndexChunk) -> IndexColumns:
    return IndexColumns(
        uids=_column("I", pb.uids),
        flag_ids=_column("I", pb.flag_ids),
        modseqs=_column("Q", pb.modseqs),
        sizes=_column("Q", pb.sizes),
        dates=_column("q", pb.dates),
        tz_offsets=_column("h", pb.tz_offsets),
        flag_sets={fs.id: tuple(fs.flags) for fs in pb.flag_sets},
        header_hits=tuple(frozenset(_column("I", hits.uids)) for hits in pb.header_hits),
        text_hits=tuple(frozenset(_column("I", hits.uids)) for hits in pb.text_hits),
        sort_keys=pb.sort_keys,
    )


async def _whole(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _watch_batches(events: Iterator[store_pb2.ChangeEvent]) -> Iterator[list[object]]:
    for pb in events:
        yield [_event(pb)]


def _write_result(reply: store_pb2.WriteReply, kind: str) -> Any:
    """The unary RPC's reply message inside a WriteReply, or its error raised."""
    if reply.error_code:
        raise _error(_STATUS_BY_VALUE.get(reply.error_code, grpc.StatusCode.UNKNOWN), reply.error_message)
    reply_kind = reply.WhichOneof("reply")
    if reply_kind is None:
        raise StoreError(StoreErrorKind.INTERNAL, f"the store answered a {kind} write with no reply")
    return getattr(reply, reply_kind)


class GrpcStore:
    """Implements `imapd.store_client.StoreClient` against `mailha store serve`."""

    def __init__(self, address: str, epoch: int, *, max_threads: int = 32, local: LocalReader | None = None) -> None:
        self.epoch = epoch
        self._channel = open_channel(address)
        self._stub = store_pb2_grpc.MailStoreStub(self._channel)
        self._index_stub = mailbox_index_pb2_grpc.MailboxIndexStub(self._channel)
        self._limiter = trio.CapacityLimiter(max_threads)
        # Beside the store: SELECT, STATUS, LIST, small FETCHes and repeated logins read its
        # LMDB directly, in this (trio) thread: one short read transaction, no round trip.
        self._local = local
        # None once the store answered UNIMPLEMENTED (an older store): unary writes.
        self._writes: WriteStream | None = WriteStream(self._stub)
        # Beside the store: writes over its local socket; after a refusal, gRPC for a while.
        self.local_writes = LocalWrites(local.data_dir, reply_timeout=_UNARY_TIMEOUT) if local is not None else None
        # With a listener (report_own_writes): this process's name on its Writes and Watch calls,
        # so the store answers our writes with their events instead of echoing them on Watch.
        self._own: OwnWrites | None = None
        self._feed_metadata: tuple[tuple[str, str], ...] = ()

    def report_own_writes(self, listener: OwnWrites) -> None:
        self._own = listener
        self._feed_metadata = ((FEED_TOKEN_METADATA, secrets.token_hex(16)),)
        if self._writes is not None:
            self._writes.metadata = self._feed_metadata
        if self.local_writes is not None:
            self.local_writes.feed_token = self._feed_metadata[0][1]

    def _read_local(self, local: LocalReader, fn: Callable[[LocalReader], T]) -> T:
        try:
            return fn(local)
        except store_errors.StoreError as exc:
            raise local_error(exc) from None
        except lmdb.Error as exc:
            raise StoreError(StoreErrorKind.UNAVAILABLE, f"reading the store failed: {exc}") from None

    async def _unary(self, method: Any, request: Any, timeout: float = _UNARY_TIMEOUT) -> Any:
        """One unary call without a worker thread: gRPC completes the future on its
        own thread and wakes this task through the trio token (cheaper than a
        thread hop per IMAP command)."""
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def wake(_: object) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass

        future = method.future(request, timeout=timeout)
        future.add_done_callback(wake)
        try:
            await done.wait()
        except trio.Cancelled:
            future.cancel()
            raise
        try:
            return future.result()
        except grpc.RpcError as exc:
            raise store_error(exc) from None

    async def _write(self, request: store_pb2.WriteRequest, kind: str | None = None) -> Any:
        """One write over the Writes stream; its reply (the unary RPC's reply message).
        `kind`: the request's `write` field, when the caller knows it."""
        if kind is None:
            kind = request.WhichOneof("write")
            assert kind is not None
        writes = self._writes
        if writes is None:
            return await self._unary(getattr(self._stub, _UNARY_WRITES[kind]), getattr(request, kind))
        own = self._own if kind != "claim_recent" else None  # a \Recent claim changes no feed
        if own is None:
            return await self._stream_write(writes, request, kind)
        inner = getattr(request, kind)
        ticket = own.write_started(inner.header.user if kind == "append" else inner.user)
        answered: list[store_pb2.WriteReply] = []
        try:
            return await self._stream_write(writes, request, kind, answered)
        finally:
            # Before the caller resumes: its peers here must be able to catch up with this write.
            events = tuple([_event(pb, own=True) for pb in answered[0].events]) if answered else ()
            own.write_ended(ticket, events, certain=bool(answered))

    async def _stream_write(
        self,
        writes: WriteStream,
        request: store_pb2.WriteRequest,
        kind: str,
        answered: list[store_pb2.WriteReply] | None = None,
    ) -> Any:
        local = self.local_writes
        if local is not None and local.ready():
            try:
                reply = await local.write(request)  # bounded by its reply_timeout
            except LocalWritesRefused as exc:
                # Not sent: over gRPC this time (a store without the socket, or one restarting).
                log.warning("writing over gRPC for %.0f s: %s", RETRY_SECONDS, exc)
            except LocalWritesLost as exc:
                raise StoreError(StoreErrorKind.UNAVAILABLE, str(exc)) from None
            else:
                if answered is not None:
                    answered.append(reply)  # the store's answer, success or refusal: its events are certain
                return _write_result(reply, kind)
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        outcome: list[store_pb2.WriteReply | Exception] = []

        def wake(result: store_pb2.WriteReply | Exception) -> None:
            outcome.append(result)
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass

        rid = writes.send(request, wake)
        try:
            with trio.move_on_after(_UNARY_TIMEOUT):
                await done.wait()
        finally:
            if not outcome:
                writes.forget(rid)  # cancelled or timed out: the write may still happen, as a unary call's
        if not outcome:
            raise StoreError(StoreErrorKind.UNAVAILABLE, f"the store did not answer a write in {_UNARY_TIMEOUT:.0f} s")
        result = outcome[0]
        if isinstance(result, store_pb2.WriteReply) and answered is not None:
            answered.append(result)  # the store's answer, success or refusal: its events are certain
        if isinstance(result, grpc.RpcError):
            if _code(result) == grpc.StatusCode.UNIMPLEMENTED and self._writes is writes:
                # A store without Writes never saw the request: unary calls from now on.
                self._writes = None
                writes.close()
                return await self._write(request)
            raise store_error(result)
        if isinstance(result, StreamEnded):
            raise StoreError(StoreErrorKind.UNAVAILABLE, str(result))
        if isinstance(result, Exception):
            raise result
        return _write_result(result, kind)

    async def _run(self, fn: Callable[[], T]) -> T:
        def call() -> T:
            try:
                return fn()
            except grpc.RpcError as exc:
                raise store_error(exc) from None

        return await trio.to_thread.run_sync(call, limiter=self._limiter)

    async def authenticate(self, name: str, password: str) -> str:
        # Beside the store, a login the store accepted before (same password, same stored
        # hash, account still enabled) is answered from a local read; anything else asks it.
        before = None
        if self._local is not None:
            try:
                user, before = self._local.verified_login(name, password)
            except (store_errors.StoreError, lmdb.Error, UnicodeError):
                user, before = None, None
            if user is not None:
                return user
        req = store_pb2.AuthenticateRequest(name=name, password=password)
        reply: store_pb2.AuthenticateReply = await self._unary(self._stub.Authenticate, req)
        if before is not None and self._local is not None:
            try:
                self._local.remember_login(name, password, reply.user, before)
            except (store_errors.StoreError, lmdb.Error):
                pass  # not remembered: the next login asks the store again
        return reply.user

    async def list_mailboxes(
        self, user: str, *, with_status: bool = False, subscribed_only: bool = False
    ) -> Sequence[MailboxInfo]:
        req = store_pb2.ListMailboxesRequest(user=user, with_status=with_status, subscribed_only=subscribed_only)
        if self._local is not None:
            reply = self._read_local(self._local, lambda r: r.list_mailboxes(req))
        else:
            reply = await self._unary(self._stub.ListMailboxes, req)
        return [_info(m) for m in reply.mailboxes]

    async def create_mailbox(self, user: str, name: str, special_use: str = "") -> MailboxInfo:
        req = store_pb2.CreateMailboxRequest(epoch=self.epoch, user=user, name=name, special_use=special_use)
        return _info(await self._unary(self._stub.CreateMailbox, req))

    async def delete_mailbox(self, user: str, name: str) -> None:
        req = store_pb2.DeleteMailboxRequest(epoch=self.epoch, user=user, name=name)
        await self._unary(self._stub.DeleteMailbox, req)

    async def rename_mailbox(self, user: str, old_name: str, new_name: str) -> MailboxInfo:
        req = store_pb2.RenameMailboxRequest(epoch=self.epoch, user=user, old_name=old_name, new_name=new_name)
        return _info(await self._unary(self._stub.RenameMailbox, req))

    async def subscribe(self, user: str, name: str, subscribed: bool) -> None:
        req = store_pb2.SubscribeRequest(epoch=self.epoch, user=user, name=name, subscribed=subscribed)
        await self._unary(self._stub.Subscribe, req)

    async def status(self, user: str, name: str) -> MailboxInfo:
        if self._local is not None:
            return _info(self._read_local(self._local, lambda r: r.status(user, name)))
        req = store_pb2.StatusRequest(user=user, name=name)
        return _info(await self._unary(self._stub.Status, req))

    async def select(self, user: str, name: str) -> SelectResult:
        reply: store_pb2.SelectReply
        if self._local is not None:
            reply = self._read_local(self._local, lambda r: r.select(user, name, packed=True))
        else:
            request = store_pb2.SelectRequest(user=user, name=name, packed_uids=True)
            reply = await self._unary(self._stub.Select, request)
        return SelectResult(
            _info(reply.mailbox),
            _column("I", reply.uids_le32),
            tuple(reply.permanent_flags),
            reply.recent_boundary,
            reply.first_unseen_uid,
        )

    async def fetch(self, user: str, mailbox_id: int, request: FetchRequest) -> AsyncGenerator[FetchedMessage, None]:
        small = _uid_count(request.uid_set) <= _UNARY_FETCH_MAX
        # A small selection comes in one unary reply (no worker thread, one gRPC
        # message instead of one per email); the store says `truncated` past its bound.
        # Beside the store, from its records: no API message per email and back.
        if small and self._local is not None and not request.with_facts:
            records = self._read_local(
                self._local,
                lambda r: r.fetch_records(
                    user,
                    mailbox_id,
                    request.uid_set,
                    with_header=request.with_header,
                    with_body=request.with_body,
                    changed_since=request.changed_since,
                ),
            )
            if records is not None:
                for uid, rec, header, body in records:
                    meta = MessageMeta(
                        uid, rec.modseq, rec.flags, rec.internal_date, rec.tz_offset_minutes, rec.size, header or None
                    )
                    yield FetchedMessage(meta, body)
                return
        req = store_pb2.FetchRequest(
            user=user,
            mailbox_id=mailbox_id,
            uid_set=request.uid_set,
            with_header=request.with_header,
            with_body=request.with_body,
            changed_since=request.changed_since,
            with_message_facts=request.with_facts,
        )
        if small and self._local is not None and request.with_facts:
            items = self._read_local(self._local, lambda r: r.fetch_items(req))
            if items is not None:
                for pb, whole in items:
                    yield FetchedMessage(_meta(pb), (whole,) if request.with_body and whole is not None else None)
                return
        elif small and self._local is None:
            batch: store_pb2.FetchBatchReply = await self._unary(self._stub.FetchBatch, req)
            if not batch.truncated:
                bodies = batch.bodies if request.with_body else None
                for i, pb in enumerate(batch.metas):
                    yield FetchedMessage(_meta(pb), (bodies[i],) if bodies is not None else None)
                return

        # The stream is read in bounded batches by trio's cached worker threads:
        # no thread start per FETCH, and memory bounded by one batch.
        def start() -> tuple[Any, Iterator[list[object]], list[object] | None]:
            # Creating the call takes gRPC locks: do it off the trio thread too.
            call = self._stub.Fetch(req, timeout=300)
            batches = _fetch_batches(iter(call))
            return call, batches, next(batches, None)

        call, batches, first = await self._run(start)
        try:
            while first is not None:
                for item in first:
                    assert isinstance(item, FetchedMessage)
                    yield item
                first = await self._run(lambda: next(batches, None))
        finally:
            call.cancel()

    async def scan_index(self, user: str, mailbox_id: int, query: IndexQuery) -> AsyncGenerator[IndexColumns, None]:
        req = mailbox_index_pb2.IndexScanRequest(
            user=user,
            mailbox_id=mailbox_id,
            uid_set=query.uid_set,
            with_sizes_dates=query.with_sizes_dates,
            header_queries=[mailbox_index_pb2.HeaderQuery(field=f, needle=n) for f, n in query.header_queries],
            text_queries=[mailbox_index_pb2.TextQuery(needle=n, body_only=b) for n, b in query.text_queries],
            with_sort_keys=query.with_sort_keys,
            with_flags=query.with_flags,
            without_flags=query.without_flags,
            without_modseqs=not query.with_modseqs,
        )
        if self._local is not None and not query.text_queries:
            # Beside the store: the same scan from a local read transaction, no round trip.
            local = self._local
            for chunk in self._read_local(local, lambda r: r.scan_index(req)):
                yield _columns(chunk)
            return

        def start() -> tuple[Any, Iterator[mailbox_index_pb2.IndexChunk], mailbox_index_pb2.IndexChunk | None]:
            call = self._index_stub.Scan(req, timeout=300)
            chunks = iter(call)
            return call, chunks, next(chunks, None)

        # One worker-thread hop for an answer of one chunk: the store marks the last chunk.
        piece: mailbox_index_pb2.IndexChunk | None
        call, chunks, piece = await self._run(start)
        try:
            while piece is not None:
                yield _columns(piece)
                if piece.last:
                    break
                piece = await self._run(lambda: next(chunks, None))
        finally:
            call.cancel()

    async def store_flags(
        self,
        user: str,
        mailbox_id: int,
        uid_set: str,
        mode: FlagMode,
        flags: Sequence[str],
        *,
        unchanged_since: int | None = None,
    ) -> StoreFlagsResult:
        mode_value = mode.value
        if self._local is not None and unchanged_since is None:
            # Beside the store, a STORE that changes nothing is answered from a local read:
            # the store would write nothing either. Any doubt (an error) goes to the store.
            # Asked from the fields: the request message is built only for a write.
            try:
                modseq = self._local.flags_already(
                    epoch=self.epoch, user=user, mailbox_id=mailbox_id, uid_set=uid_set, mode=mode_value, flags=flags
                )
            except (store_errors.StoreError, lmdb.Error):
                modseq = None
            if modseq is not None:
                return StoreFlagsResult((), (), modseq)
        req = store_pb2.StoreFlagsRequest(
            epoch=self.epoch,
            user=user,
            mailbox_id=mailbox_id,
            uid_set=uid_set,
            mode=mode_value,  # type: ignore[arg-type]
            flags=list(flags),
            unchanged_since=unchanged_since or 0,
            has_unchanged_since=unchanged_since is not None,
        )
        reply = await self._write(store_pb2.WriteRequest(store_flags=req))
        return StoreFlagsResult(tuple(_meta(m) for m in reply.updated), tuple(reply.modified), reply.highestmodseq)

    async def _copy(self, user: str, mailbox_id: int, uid_set: str, dest: str, move: bool) -> CopyResult:
        req = store_pb2.CopyRequest(
            epoch=self.epoch, user=user, mailbox_id=mailbox_id, uid_set=uid_set, dest_mailbox=dest
        )
        reply = await self._write(store_pb2.WriteRequest(move=req) if move else store_pb2.WriteRequest(copy=req))
        return CopyResult(
            reply.dest_uidvalidity,
            tuple(reply.source_uids),
            tuple(reply.dest_uids),
            tuple(reply.expunged),
            reply.dest_mailbox_id,
            reply.dest_modseq,
            reply.source_modseq,
        )

    async def copy(self, user: str, mailbox_id: int, uid_set: str, dest_mailbox: str) -> CopyResult:
        return await self._copy(user, mailbox_id, uid_set, dest_mailbox, False)

    async def move(self, user: str, mailbox_id: int, uid_set: str, dest_mailbox: str) -> CopyResult:
        return await self._copy(user, mailbox_id, uid_set, dest_mailbox, True)

    async def expunge(self, user: str, mailbox_id: int, uid_set: str = "") -> ExpungeResult:
        req = store_pb2.ExpungeRequest(epoch=self.epoch, user=user, mailbox_id=mailbox_id, uid_set=uid_set)
        if self._local is not None:
            # Beside the store, an EXPUNGE with nothing \Deleted is a read (as a STORE that
            # changes nothing); any doubt (an error) goes to the store.
            try:
                modseq = self._local.nothing_to_expunge(req)
            except (store_errors.StoreError, lmdb.Error):
                modseq = None
            if modseq is not None:
                return ExpungeResult((), modseq)
        reply = await self._write(store_pb2.WriteRequest(expunge=req))
        return ExpungeResult(tuple(reply.expunged), reply.highestmodseq)

    async def vanished(self, user: str, mailbox_id: int, since_modseq: int, uid_set: str = "") -> tuple[int, ...]:
        req = store_pb2.VanishedRequest(user=user, mailbox_id=mailbox_id, since_modseq=since_modseq, uid_set=uid_set)
        reply = await self._unary(self._stub.Vanished, req)
        return tuple(reply.uids)

    async def get_metadata(
        self, user: str, mailbox: str, entries: Sequence[str], depth: int
    ) -> tuple[tuple[str, bytes], ...]:
        req = store_pb2.GetMetadataRequest(user=user, mailbox=mailbox, entries=list(entries), depth=depth)
        reply = await self._unary(self._stub.GetMetadata, req)
        return tuple((e.name, e.value) for e in reply.entries)

    async def set_metadata(
        self, user: str, mailbox: str, entries: Sequence[tuple[str, bytes | None]]
    ) -> MetadataRefusal | None:
        req = store_pb2.SetMetadataRequest(
            epoch=self.epoch,
            user=user,
            mailbox=mailbox,
            entries=[
                store_pb2.MetadataEntry(name=name, value=value or b"", remove=value is None) for name, value in entries
            ],
        )
        reply = await self._unary(self._stub.SetMetadata, req)
        return MetadataRefusal(reply.refused, reply.max_size) if reply.refused else None

    async def claim_recent(self, user: str, mailbox_id: int, up_to_uid: int) -> tuple[int, int]:
        req = store_pb2.ClaimRecentRequest(epoch=self.epoch, user=user, mailbox_id=mailbox_id, up_to_uid=up_to_uid)
        reply = await self._write(store_pb2.WriteRequest(claim_recent=req))
        return reply.from_uid, reply.to_uid

    def _header(self, user: str, mailbox: str, spec: AppendSpec, size: int) -> store_pb2.AppendHeader:
        return store_pb2.AppendHeader(
            epoch=self.epoch,
            user=user,
            mailbox=mailbox,
            flags=list(spec.flags),
            internal_date=spec.internal_date,
            tz_offset_minutes=spec.tz_offset_minutes,
            size=size,
        )

    async def append(
        self,
        user: str,
        mailbox: str,
        spec: AppendSpec,
        size: int,
        chunks: bytes | AsyncIterable[bytes],
        *,
        claim_recent: bool = False,
    ) -> AppendResult:
        header = self._header(user, mailbox, spec, size)
        if size <= ONE_REQUEST_LIMIT:
            data = chunks if isinstance(chunks, bytes) else b"".join([c async for c in chunks])
            header.claim_recent = claim_recent
            write = store_pb2.WriteRequest(append=store_pb2.AppendRequest(header=header, data=data, last=True))
            reply = await self._write(write, "append")
            recent = (reply.recent_from, reply.recent_to) if claim_recent else None
            return AppendResult(reply.uidvalidity, (reply.uid,), reply.mailbox_id, recent)
        if isinstance(chunks, bytes):
            chunks = _whole(chunks)
        # Big message: stream its pieces as they arrive through a bounded queue.
        pieces: queue.Queue[bytes | None] = queue.Queue(maxsize=8)

        def requests() -> Iterator[store_pb2.AppendRequest]:
            yield store_pb2.AppendRequest(header=header)
            while (piece := pieces.get()) is not None:
                yield store_pb2.AppendRequest(data=piece)
            yield store_pb2.AppendRequest(last=True)

        result: list[AppendResult] = []
        refused: list[StoreError] = []
        async with trio.open_nursery() as nursery:

            async def call() -> None:
                try:
                    reply = await self._run(lambda: self._stub.Append(requests(), timeout=300))
                except StoreError as exc:
                    # The store refused (TOO_BIG, OVER_QUOTA ...) and reads no more pieces: empty
                    # the queue so the producer is not left blocked, and raise the StoreError
                    # itself below (not wrapped in the nursery's ExceptionGroup).
                    refused.append(exc)
                    while not pieces.empty():
                        pieces.get_nowait()
                    return
                result.append(AppendResult(reply.uidvalidity, (reply.uid,), reply.mailbox_id))

            nursery.start_soon(call)
            try:
                async for chunk in chunks:
                    for i in range(0, len(chunk), PIECE):
                        if refused:
                            break
                        await trio.to_thread.run_sync(pieces.put, chunk[i : i + PIECE])
            finally:
                await trio.to_thread.run_sync(pieces.put, None)
        if refused:
            raise refused[0]
        return result[0]

    async def multi_append(self, user: str, mailbox: str, messages: Sequence[tuple[AppendSpec, bytes]]) -> AppendResult:
        def requests() -> Iterator[store_pb2.AppendRequest]:
            for spec, data in messages:
                header = self._header(user, mailbox, spec, len(data))
                if not data:
                    yield store_pb2.AppendRequest(header=header, last=True)
                for i in range(0, len(data), PIECE):
                    piece = data[i : i + PIECE]
                    last = i + PIECE >= len(data)
                    yield store_pb2.AppendRequest(header=header if i == 0 else None, data=piece, last=last)

        reply = await self._run(lambda: self._stub.MultiAppend(requests(), timeout=300))
        return AppendResult(reply.uidvalidity, tuple(reply.uids), reply.mailbox_id)

    async def get_quota(self, user: str) -> QuotaInfo:
        req = store_pb2.GetQuotaRequest(user=user)
        reply = await self._unary(self._stub.GetQuota, req)
        return QuotaInfo(reply.user or user, reply.usage_bytes, reply.limit_bytes, reply.messages)

    async def watch(self, user: str, mailbox_id: int, since_modseq: int) -> AsyncGenerator[ChangeEvent, None]:
        req = store_pb2.WatchRequest(user=user, mailbox_id=mailbox_id, since_modseq=since_modseq)
        async for item in self._pump_events(self._stub.Watch(req, metadata=self._feed_metadata)):
            yield item

    async def watch_account(self, user: str) -> AsyncGenerator[ChangeEvent, None]:
        async for item in self._pump_events(self._stub.WatchAccount(store_pb2.WatchAccountRequest(user=user))):
            yield item

    async def _pump_events(self, stream: Iterable[store_pb2.ChangeEvent]) -> AsyncGenerator[ChangeEvent, None]:
        pump = _StreamPump(stream, _watch_batches)
        pump.start()
        try:
            async with pump.receive:
                async for batch in pump.receive:
                    if isinstance(batch, StoreError):
                        raise batch
                    for item in batch:
                        assert isinstance(item, ChangeEvent)
                        yield item
        finally:
            pump.cancel()

    def forget_mailbox(self, mailbox_id: int) -> int:
        return self._local.forget_mailbox(mailbox_id) if self._local is not None else 0

    async def aclose(self) -> None:
        if self._writes is not None:
            self._writes.close()
        if self.local_writes is not None:
            self.local_writes.close()
        if self._local is not None:
            self._local.close()
        await trio.to_thread.run_sync(self._channel.close)
