"""The gRPC face of MailStore: request plumbing and the one place errors become statuses."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import NoReturn

import grpc

from mailha_api import store_pb2, store_pb2_grpc
from store.bodies import BodySource, BodyWriter
from store.changefeed import feed_token
from store.engine import MailStore
from store.errors import ErrorKind, Internal, InvalidArgument, ResourceExhausted, StoreError
from store.local_writes import LocalWritesServer
from store.write_stream import IncomingWrites, write_reply

log = logging.getLogger("mailha.store.servicer")
STATUS = {
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorKind.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.ABORTED: grpc.StatusCode.ABORTED,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
}
PIPELINE_IN_FLIGHT = 256  # appends one AppendPipeline stream keeps queued at the committer (its max batch)
EMPTY = store_pb2.Empty()


def _abort_with(context: grpc.ServicerContext, exc: StoreError) -> NoReturn:
    context.abort(STATUS[exc.kind], exc.message)
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


@contextlib.contextmanager
def errors_to_status(context: grpc.ServicerContext) -> Iterator[None]:
    """StoreErrors raised inside become the call's gRPC status (every service of the store)."""
    try:
        yield
    except StoreError as exc:
        _abort_with(context, exc)


_errors = errors_to_status


Outcome = tuple[store_pb2.AppendHeader, BodySource | StoreError]


def _discard_when_done(source: BodySource) -> Callable[[Future[store_pb2.AppendReply]], None]:
    def discard(_: Future[store_pb2.AppendReply]) -> None:
        source.discard()

    return discard


class _PipelineState:
    """Counters of one AppendPipeline call, guarded by its condition."""

    def __init__(self) -> None:
        self.submitted = 0  # messages handed to the committer (or failed at once)
        self.answered = 0  # replies yielded
        self.ended = False  # the reader is done
        self.error: StoreError | None = None  # ends the call after the replies owed


class MailStoreServicer(store_pb2_grpc.MailStoreServicer):
    def __init__(self, store: MailStore, heartbeat_seconds: float = 5.0) -> None:
        self.store = store
        self.heartbeat_seconds = heartbeat_seconds
        self._writes_lock = threading.Lock()
        self._writes: set[IncomingWrites] = set()
        self._writes_ending = False
        # The local write socket (store/local_writes.py), when the server runs one.
        self.local_writes: LocalWritesServer | None = None

    def end_write_streams(self) -> None:
        """At shutdown: every Writes call (and any that still starts) answers what it has in flight and ends."""
        with self._writes_lock:
            self._writes_ending = True
            for writes in self._writes:
                writes.end()

    # ---- fencing ----------------------------------------------------------

    def Fence(self, request: store_pb2.FenceRequest, context: grpc.ServicerContext) -> store_pb2.EpochReply:
        with _errors(context):
            return self.store.fence(request.epoch)

    def GetEpoch(self, request: store_pb2.GetEpochRequest, context: grpc.ServicerContext) -> store_pb2.EpochReply:
        with _errors(context):
            return self.store.epoch()

    def SetWritable(self, request: store_pb2.SetWritableRequest, context: grpc.ServicerContext) -> store_pb2.EpochReply:
        with _errors(context):
            reply = self.store.set_writable(request.epoch, request.writable)
        if not request.writable and self.local_writes is not None:
            # Stepping down: local writers see their connection end (as a Writes call's
            # StreamEnded) once what is in flight is answered; new writes are refused.
            self.local_writes.end_connections()
        return reply

    # ---- users, addresses, quotas ------------------------------------------

    def CreateUser(self, request: store_pb2.CreateUserRequest, context: grpc.ServicerContext) -> store_pb2.UserInfo:
        with _errors(context):
            return self.store.create_user(request)

    def DeleteUser(self, request: store_pb2.DeleteUserRequest, context: grpc.ServicerContext) -> store_pb2.Empty:
        with _errors(context):
            self.store.delete_user(request)
            return EMPTY

    def ListUsers(self, request: store_pb2.ListUsersRequest, context: grpc.ServicerContext) -> store_pb2.ListUsersReply:
        with _errors(context):
            return self.store.list_users()

    def GetUser(self, request: store_pb2.GetUserRequest, context: grpc.ServicerContext) -> store_pb2.UserInfo:
        with _errors(context):
            return self.store.get_user(request.name)

    def SetPassword(self, request: store_pb2.SetPasswordRequest, context: grpc.ServicerContext) -> store_pb2.Empty:
        with _errors(context):
            self.store.set_password(request)
            return EMPTY

    def Authenticate(
        self, request: store_pb2.AuthenticateRequest, context: grpc.ServicerContext
    ) -> store_pb2.AuthenticateReply:
        with _errors(context):
            return store_pb2.AuthenticateReply(user=self.store.authenticate(request.name, request.password))

    def AddAddress(self, request: store_pb2.AddAddressRequest, context: grpc.ServicerContext) -> store_pb2.AddressInfo:
        with _errors(context):
            return self.store.add_address(request)

    def DeleteAddress(self, request: store_pb2.DeleteAddressRequest, context: grpc.ServicerContext) -> store_pb2.Empty:
        with _errors(context):
            self.store.delete_address(request)
            return EMPTY

    def ListAddresses(
        self, request: store_pb2.ListAddressesRequest, context: grpc.ServicerContext
    ) -> store_pb2.ListAddressesReply:
        with _errors(context):
            return self.store.list_addresses(request.user)

    def ResolveAddress(
        self, request: store_pb2.ResolveAddressRequest, context: grpc.ServicerContext
    ) -> store_pb2.AddressInfo:
        with _errors(context):
            return self.store.resolve_address(request.address)

    def GetQuota(self, request: store_pb2.GetQuotaRequest, context: grpc.ServicerContext) -> store_pb2.QuotaInfo:
        with _errors(context):
            return self.store.get_quota(request.user)

    def SetQuota(self, request: store_pb2.SetQuotaRequest, context: grpc.ServicerContext) -> store_pb2.QuotaInfo:
        with _errors(context):
            return self.store.set_quota(request)

    # ---- mailboxes ------------------------------------------------------------

    def CreateMailbox(
        self, request: store_pb2.CreateMailboxRequest, context: grpc.ServicerContext
    ) -> store_pb2.MailboxInfo:
        with _errors(context):
            return self.store.create_mailbox(request)

    def DeleteMailbox(self, request: store_pb2.DeleteMailboxRequest, context: grpc.ServicerContext) -> store_pb2.Empty:
        with _errors(context):
            self.store.delete_mailbox(request)
            return EMPTY

    def RenameMailbox(
        self, request: store_pb2.RenameMailboxRequest, context: grpc.ServicerContext
    ) -> store_pb2.MailboxInfo:
        with _errors(context):
            return self.store.rename_mailbox(request)

    def ListMailboxes(
        self, request: store_pb2.ListMailboxesRequest, context: grpc.ServicerContext
    ) -> store_pb2.ListMailboxesReply:
        with _errors(context):
            return self.store.list_mailboxes(request)

    def Subscribe(self, request: store_pb2.SubscribeRequest, context: grpc.ServicerContext) -> store_pb2.Empty:
        with _errors(context):
            self.store.subscribe(request)
            return EMPTY

    def Status(self, request: store_pb2.StatusRequest, context: grpc.ServicerContext) -> store_pb2.MailboxInfo:
        with _errors(context):
            return self.store.status(request.user, request.name)

    def GetMetadata(
        self, request: store_pb2.GetMetadataRequest, context: grpc.ServicerContext
    ) -> store_pb2.GetMetadataReply:
        with _errors(context):
            return self.store.get_metadata(request)

    def SetMetadata(
        self, request: store_pb2.SetMetadataRequest, context: grpc.ServicerContext
    ) -> store_pb2.SetMetadataReply:
        with _errors(context):
            return self.store.set_metadata(request)

    def Select(self, request: store_pb2.SelectRequest, context: grpc.ServicerContext) -> store_pb2.SelectReply:
        with _errors(context):
            return self.store.select(request.user, request.name, packed=request.packed_uids)

    # ---- appends ------------------------------------------------------------------

    def _messages(self, requests: Iterator[store_pb2.AppendRequest], end_completes: bool) -> Iterator[Outcome]:
        """Split a request stream into messages; an oversized one becomes an error, its data is dropped."""
        header: store_pb2.AppendHeader | None = None
        writer: BodyWriter | None = None
        error: StoreError | None = None
        limit = self.store.options.max_message_size
        try:
            for req in requests:
                if header is None:
                    if not req.HasField("header"):
                        raise InvalidArgument("the first request of each message must carry `header`")
                    if req.last and len(req.data) <= limit:
                        # The common case (a small message in one request) needs no writer.
                        try:
                            self.store.check_announced_size(req.header.size)
                            yield req.header, BodySource(len(req.data), data=req.data)
                        except StoreError as exc:
                            yield req.header, exc
                        continue
                    header, writer, error = req.header, BodyWriter(self.store.spool_dir), None
                    try:
                        self.store.check_announced_size(header.size)
                    except StoreError as exc:
                        error = exc
                assert writer is not None
                if error is None:
                    try:
                        writer.write(req.data)
                    except StoreError as exc:  # the spool's disk is full: this message fails alone
                        error = exc
                if error is None and writer.size > limit:
                    error = ResourceExhausted(f"size: message exceeds the limit of {limit} bytes")
                    writer.abandon()
                if req.last:
                    yield header, (error if error is not None else writer.finish())
                    header, writer = None, None
            if header is not None:
                assert writer is not None
                if not end_completes:
                    raise InvalidArgument("the stream ended inside a message (no request with last=true)")
                yield header, (error if error is not None else writer.finish())
                writer = None
        finally:
            if writer is not None:
                writer.abandon()

    def Append(
        self, request_iterator: Iterator[store_pb2.AppendRequest], context: grpc.ServicerContext
    ) -> store_pb2.AppendReply:
        with _errors(context):
            outcomes = list(self._messages(request_iterator, end_completes=True))
            if len(outcomes) != 1:
                for _, src in outcomes:
                    if isinstance(src, BodySource):
                        src.discard()
                raise InvalidArgument(f"Append takes exactly one message, got {len(outcomes)} (use MultiAppend)")
            header, source = outcomes[0]
            if isinstance(source, StoreError):
                raise source
            return self.store.append(header, source)

    def AppendOne(self, request: store_pb2.AppendRequest, context: grpc.ServicerContext) -> store_pb2.AppendReply:
        with _errors(context):
            if not request.HasField("header"):
                raise InvalidArgument("AppendOne needs `header`")
            self.store.check_announced_size(max(request.header.size, len(request.data)))
            source = BodySource(len(request.data), data=request.data)
            return self.store.append(request.header, source)

    def MultiAppend(
        self, request_iterator: Iterator[store_pb2.AppendRequest], context: grpc.ServicerContext
    ) -> store_pb2.MultiAppendReply:
        with _errors(context):
            outcomes = list(self._messages(request_iterator, end_completes=True))
            parts = [(h, s) for h, s in outcomes if isinstance(s, BodySource)]
            failed = [s for _, s in outcomes if isinstance(s, StoreError)]
            if failed:
                for _, src in parts:
                    src.discard()
                raise failed[0]
            if not parts:
                raise InvalidArgument("MultiAppend received no message")
            return self.store.multi_append(parts[0][0], parts)

    def AppendPipeline(
        self, request_iterator: Iterator[store_pb2.AppendRequest], context: grpc.ServicerContext
    ) -> Iterator[store_pb2.AppendReply]:
        # A reader thread keeps up to PIPELINE_IN_FLIGHT appends queued at the committer,
        # so one stream benefits from group commit; replies go out in request order.
        # Each outcome lands in `done` by sequence number (the committer's callback puts
        # it there), so this thread wakes once per reply, not once per request and again
        # per commit.
        cond = threading.Condition()
        done: dict[int, Future[store_pb2.AppendReply]] = {}
        state = _PipelineState()

        def land(seq: int) -> Callable[[Future[store_pb2.AppendReply]], None]:
            def put(fut: Future[store_pb2.AppendReply]) -> None:
                with cond:
                    done[seq] = fut
                    cond.notify_all()

            return put

        def room() -> bool:
            """Wait until fewer than PIPELINE_IN_FLIGHT are unanswered; False once the call is over."""
            with cond:
                while state.submitted - state.answered >= PIPELINE_IN_FLIGHT:
                    if not context.is_active():
                        return False
                    cond.wait(1.0)
            return True

        def reader() -> None:
            end: StoreError | None = None
            try:
                for header, source in self._messages(request_iterator, end_completes=False):
                    if not room():
                        return
                    fut: Future[store_pb2.AppendReply]
                    if isinstance(source, StoreError):
                        fut = Future()
                        fut.set_exception(source)
                    else:
                        try:
                            fut = self.store.submit_append(header, source)
                        except StoreError as exc:
                            fut = Future()
                            fut.set_exception(exc)
                        if source.path is not None:
                            fut.add_done_callback(_discard_when_done(source))
                    with cond:
                        seq = state.submitted
                        state.submitted += 1
                    fut.add_done_callback(land(seq))
            except StoreError as exc:
                end = exc
            except grpc.RpcError:
                pass  # the client went away
            except Exception:
                log.exception("AppendPipeline reader failed")
                end = Internal("AppendPipeline: reading the request stream failed")
            finally:
                with cond:
                    state.ended, state.error = True, end
                    cond.notify_all()

        threading.Thread(target=reader, name="append-pipeline", daemon=True).start()
        while True:
            with cond:
                seq = state.answered
                while seq not in done and not (state.ended and seq == state.submitted):
                    cond.wait()
                fut = done.pop(seq, None)
                if fut is None:
                    error = state.error
                else:
                    state.answered += 1
                    cond.notify_all()  # the reader may be waiting for room
            if fut is None:
                if error is not None:
                    _abort_with(context, error)
                return
            try:
                yield fut.result()
            except StoreError as exc:
                yield store_pb2.AppendReply(error_code=STATUS[exc.kind].value[0], error_message=exc.message)

    def Writes(
        self, request_iterator: Iterator[store_pb2.WriteRequest], context: grpc.ServicerContext
    ) -> Iterator[store_pb2.WriteReply]:
        # One front end's writes over one call (store/write_stream.py); a failed write is
        # its reply's error, the stream goes on.
        writes = IncomingWrites(self.store, request_iterator, feed_token(context.invocation_metadata()))
        context.add_callback(writes.stop)
        with self._writes_lock:
            self._writes.add(writes)
            if self._writes_ending:
                writes.end()
        try:
            writes.start()
            for rid, field, fut, origin in writes.finished():
                yield write_reply(rid, field, fut, origin)
        finally:
            with self._writes_lock:
                self._writes.discard(writes)

    # ---- messages -----------------------------------------------------------------

    def Fetch(
        self, request: store_pb2.FetchRequest, context: grpc.ServicerContext
    ) -> Iterator[store_pb2.FetchResponse]:
        with _errors(context):
            yield from self.store.fetch(request)

    def FetchBatch(self, request: store_pb2.FetchRequest, context: grpc.ServicerContext) -> store_pb2.FetchBatchReply:
        with _errors(context):
            return self.store.fetch_batch(request)

    def StoreFlags(
        self, request: store_pb2.StoreFlagsRequest, context: grpc.ServicerContext
    ) -> store_pb2.StoreFlagsReply:
        with _errors(context):
            return self.store.store_flags(request)

    def Copy(self, request: store_pb2.CopyRequest, context: grpc.ServicerContext) -> store_pb2.CopyReply:
        with _errors(context):
            return self.store.copy(request, move=False)

    def Move(self, request: store_pb2.CopyRequest, context: grpc.ServicerContext) -> store_pb2.CopyReply:
        with _errors(context):
            return self.store.copy(request, move=True)

    def Expunge(self, request: store_pb2.ExpungeRequest, context: grpc.ServicerContext) -> store_pb2.ExpungeReply:
        with _errors(context):
            return self.store.expunge(request)

    def Vanished(self, request: store_pb2.VanishedRequest, context: grpc.ServicerContext) -> store_pb2.VanishedReply:
        with _errors(context):
            return self.store.vanished(request)

    def ClaimRecent(
        self, request: store_pb2.ClaimRecentRequest, context: grpc.ServicerContext
    ) -> store_pb2.ClaimRecentReply:
        with _errors(context):
            return self.store.claim_recent(request)

    def Watch(self, request: store_pb2.WatchRequest, context: grpc.ServicerContext) -> Iterator[store_pb2.ChangeEvent]:
        with _errors(context):
            yield from self.store.watch(
                request,
                self.heartbeat_seconds,
                on_subscribe=lambda sub: context.add_callback(sub.close),
                token=feed_token(context.invocation_metadata()),
            )

    def WatchAccount(
        self, request: store_pb2.WatchAccountRequest, context: grpc.ServicerContext
    ) -> Iterator[store_pb2.ChangeEvent]:
        with _errors(context):
            yield from self.store.watch_account(
                request,
                self.heartbeat_seconds,
                on_subscribe=lambda sub: context.add_callback(sub.close),
            )
