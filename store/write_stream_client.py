"""A client's end of the store's Writes stream: one call shared by many writers.

`send` puts a request on the open call (opening one on first use, or after
the last one ended) and returns at once; `done` is called, on the stream's
reader thread, with the write's reply, or with the exception that ended the
call (a grpc.RpcError, or StreamEnded) for every write still unanswered then.
Whether such a write committed is unknown, as for a unary call that failed.
The caller turns replies into its own types and wakes its own waiters.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable

import grpc

from mailha_api import store_pb2, store_pb2_grpc

Outcome = store_pb2.WriteReply | Exception
Done = Callable[[Outcome], None]


class StreamEnded(Exception):
    """The store closed the Writes stream without an error (it is shutting down)."""


class _Call:
    def __init__(self, stub: store_pb2_grpc.MailStoreStub, owner: WriteStream) -> None:
        self.owner = owner
        self.requests: queue.SimpleQueue[store_pb2.WriteRequest | None] = queue.SimpleQueue()
        self.pending: dict[int, Done] = {}
        self.responses = stub.Writes(iter(self.requests.get, None), metadata=owner.metadata)
        threading.Thread(target=self._read, name="store-writes-client", daemon=True).start()

    def _read(self) -> None:
        error: Exception = StreamEnded("the store closed the write stream")
        try:
            for reply in self.responses:
                with self.owner.lock:
                    done = self.pending.pop(reply.id, None)
                if done is not None:
                    done(reply)
        except grpc.RpcError as exc:
            error = exc
        finally:
            with self.owner.lock:
                self.owner.ended(self)
                left, self.pending = self.pending, {}
            self.requests.put(None)  # ends gRPC's thread that reads our requests
            for done in left.values():
                done(error)

    def close(self) -> None:
        self.requests.put(None)
        self.responses.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leave RpcContext.cancel untyped


class WriteStream:
    """Thread-safe; `close` ends the open call (its unanswered writes get the cancellation)."""

    def __init__(self, stub: store_pb2_grpc.MailStoreStub) -> None:
        self.lock = threading.Lock()
        # Sent with each call opened from now on (a feed token: store.changefeed).
        self.metadata: tuple[tuple[str, str], ...] = ()
        self._stub = stub
        self._ids = itertools.count(1)
        self._call: _Call | None = None

    def send(self, request: store_pb2.WriteRequest, done: Done) -> int:
        """Queue `request` (its id is set here); return the id."""
        with self.lock:
            call = self._call
            if call is None:
                call = self._call = _Call(self._stub, self)
            rid = request.id = next(self._ids)
            call.pending[rid] = done
        call.requests.put(request)
        return rid

    def forget(self, rid: int) -> None:
        """The caller stopped waiting: `done` will not be called for `rid` (the write may still happen)."""
        with self.lock:
            if self._call is not None:
                self._call.pending.pop(rid, None)

    def ended(self, call: _Call) -> None:
        """(Under `lock`) `call` is over: the next send opens a new one."""
        if self._call is call:
            self._call = None

    def close(self) -> None:
        with self.lock:
            call, self._call = self._call, None
        if call is not None:
            call.close()
