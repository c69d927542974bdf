"""A front end's end of the store's local write socket (store/local_writes.py), in trio.

Beside the store, writes go over one Unix socket connection per process
instead of the gRPC Writes stream: the writing task sends its frame itself
and, unless another task is already reading, reads the replies itself until
its own is in (handing the reading over to a waiting task when it leaves), so
a write costs no thread and no hand-off into trio. Same WriteRequest and
WriteReply as the Writes stream, same feed token (given in the hello).
imapd and lmtpd each hold one `LocalWrites` and turn its replies and errors
into their own types.

`write` raises LocalWritesRefused when there is no connection to be had (no
socket, connection refused, the store refused the hello): the write was not
sent, and the caller sends it over gRPC instead; `ready()` is False for
RETRY_SECONDS after that, so the callers' next writes go to gRPC without
trying the socket each time. A connection that ends with writes in flight
fails them with LocalWritesLost: whether they committed is unknown, as for a
Writes stream that ended.
"""

from __future__ import annotations

import itertools
import pathlib
import socket
from typing import Final

import trio

from mailha_api import store_pb2
from store.local_frames import VERSION, FrameError, FrameReader, ShortPath, encode, socket_path

_RECV: Final = 256 * 1024
_CONNECT_SECONDS: Final = 5.0
_SEND_SECONDS: Final = 30.0
RETRY_SECONDS: Final = 1.0  # after a refusal, writes go over gRPC this long before the socket is tried again


class LocalWritesRefused(Exception):
    """No connection to the store's local write socket; nothing was sent."""


class LocalWritesLost(Exception):
    """The connection ended with this write in flight: whether it committed is unknown."""


class _Waiter:
    __slots__ = ("reply", "wake")

    def __init__(self) -> None:
        self.reply: store_pb2.WriteReply | None = None
        # While its task waits for another to read (not sending, not reading itself): set when
        # the reply is in, the connection failed, or it is this task's turn to read.
        self.wake: trio.Event | None = None


class _Connection:
    def __init__(self, raw: socket.socket, stream: trio.SocketStream, frames: FrameReader) -> None:
        self.raw = raw  # the stream's own (non-blocking) socket, for sends and reads without trio's wrappers
        self.fd = raw.fileno()  # waited on only while `error` is None (the socket is open)
        self.stream = stream
        self.frames = frames
        self.send_lock = trio.Lock()
        self.slow_sends = 0  # sends waiting for room in the socket: later ones queue behind them
        self.waiting: dict[int, _Waiter] = {}
        self.reading = False  # a task is reading replies
        self.error: LocalWritesLost | None = None  # set: the connection is over

    def fail(self, why: str) -> None:
        if self.error is None:
            self.error = LocalWritesLost(why)
            for waiter in self.waiting.values():
                if waiter.wake is not None:
                    waiter.wake.set()
            self.stream.socket.close()

    def failure(self) -> LocalWritesLost:
        """A fresh error per failed write (one exception raised in many tasks would pile up
        their tracebacks)."""
        assert self.error is not None
        return LocalWritesLost(str(self.error))

    def send(self, frame: bytes) -> bytes:
        """Put as much of `frame` into the socket as it takes now, without yielding (sends of
        many sessions must not queue behind one another's scheduling rounds); what is left
        goes with `send_rest`, in order."""
        if self.error is not None:
            raise self.failure()
        if self.slow_sends:
            return frame
        try:
            return frame[self.raw.send(frame) :]
        except BlockingIOError:
            return frame
        except OSError as exc:
            self.fail(f"the store's local write connection failed: {exc}")
            raise LocalWritesLost(f"the store's local write connection failed: {exc}") from None

    async def send_rest(self, rest: bytes) -> None:
        # Shielded: a frame cut short by a cancellation would break every later one.
        self.slow_sends += 1
        try:
            async with self.send_lock:
                with trio.CancelScope(shield=True), trio.move_on_after(_SEND_SECONDS) as late:
                    try:
                        await self.stream.send_all(rest)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                        self.fail(f"the store's local write connection failed: {exc}")
                if late.cancelled_caught:
                    self.fail(f"the store did not take a write in {_SEND_SECONDS:.0f} s")
        finally:
            self.slow_sends -= 1
        if self.error is not None:
            raise self.failure()

    async def reply(self, rid: int) -> store_pb2.WriteReply:
        waiter = self.waiting[rid]
        while waiter.reply is None and self.error is None:
            if self.reading:
                wake = waiter.wake = trio.Event()
                try:
                    await wake.wait()
                finally:
                    waiter.wake = None
                continue
            self.reading = True
            try:
                while waiter.reply is None and self.error is None:
                    await self._receive()
            finally:
                self.reading = False
                # The next task waiting here reads from now on (one still sending takes over
                # when it gets here).
                for other in self.waiting.values():
                    if other.wake is not None and other.reply is None:
                        other.wake.set()
                        break
        if waiter.reply is None:
            assert self.error is not None
            raise self.failure()
        return waiter.reply

    async def _receive(self) -> None:
        """Read once and hand every whole reply in to its task: all of a group commit's
        replies at once, not one per reading task (each hand-over costs a scheduling round).

        Waits until the socket is readable, then reads it: the store answers after its
        commit, so a read tried first (as `SocketStream.receive_some` does) would fail
        every time, at the cost of a system call and an exception per write (issue 13)."""
        try:
            await trio.lowlevel.wait_readable(self.fd)
            data = self.raw.recv(_RECV)
        except BlockingIOError:
            return  # woken without data after all: wait again
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.fail(f"the store's local write connection failed: {exc}")
            return
        if not data:
            self.fail("the store closed the local write connection")
            return
        self.frames.feed(data)
        try:
            while (frame := self.frames.next_frame()) is not None:
                reply = store_pb2.WriteReply.FromString(frame)
                if reply.id == 0:  # the store is closing the connection because of what we sent
                    self.fail(f"the store closed the local write connection: {reply.error_message}")
                    return
                waiter = self.waiting.get(reply.id)
                if waiter is not None:  # else: its writer stopped waiting
                    waiter.reply = reply
                    if waiter.wake is not None:
                        waiter.wake.set()
        except (FrameError, ValueError) as exc:  # DecodeError is a ValueError
            self.fail(f"the store sent a bad frame: {exc}")


class LocalWrites:
    """Writes over `<data_dir>/writes.sock`; one connection, opened on first use and after one ended.

    `reply_timeout`: a connection whose oldest write waits longer than this for its reply
    (a store that hangs) is failed, so that write and every other in flight on it raise
    LocalWritesLost. One task per connection checks this about once a second, instead of a
    cancel scope around each write (entering and leaving one cost about as much as the rest
    of the client's work per write, issue 13). None: no bound (the caller sets its own)."""

    def __init__(self, data_dir: pathlib.Path, *, reply_timeout: float | None = None) -> None:
        if reply_timeout is not None and reply_timeout <= 0:
            raise ValueError(f"reply_timeout must be positive, not {reply_timeout}")
        self.path = socket_path(data_dir)
        self.reply_timeout = reply_timeout
        self.feed_token = ""  # sent in the hello of each connection opened from now on
        self.connections = 0  # opened so far (tests, and a log line per reconnect)
        self.answered = 0  # writes the store answered over the socket
        self._ids = itertools.count(1)
        self._conn: _Connection | None = None
        self._connecting = trio.Lock()
        self._retry_at = 0.0  # trio.current_time() from which the socket is tried again after a refusal

    def ready(self) -> bool:
        """False for RETRY_SECONDS after a refusal: write over gRPC meanwhile."""
        return not self._retry_at or trio.current_time() >= self._retry_at

    async def write(self, request: store_pb2.WriteRequest) -> store_pb2.WriteReply:
        """Send `request` (its id is set here) and return the store's reply. A request
        over MAX_FRAME raises FrameError before anything is sent."""
        conn = self._conn
        if conn is None or conn.error is not None:
            conn = await self._connection()
        rid = request.id = next(self._ids)
        frame = encode(request.SerializeToString())
        conn.waiting[rid] = _Waiter()
        try:
            rest = conn.send(frame)
            if rest:
                await conn.send_rest(rest)
            reply = await conn.reply(rid)
            self.answered += 1
            return reply
        finally:
            del conn.waiting[rid]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.fail("the client closed the local write connection")
            self._conn = None

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and conn.error is None:
            return conn
        async with self._connecting:
            conn = self._conn
            if conn is None or conn.error is not None:
                if not self.ready():  # another task's attempt was just refused
                    raise LocalWritesRefused(f"{self.path}: refused a moment ago")
                try:
                    conn = self._conn = await self._connect()
                except LocalWritesRefused:
                    self._retry_at = trio.current_time() + RETRY_SECONDS
                    raise
                self._retry_at = 0.0
                self.connections += 1
                if self.reply_timeout is not None:
                    # A system task: the client has no nursery of its own, and the task ends
                    # with its connection (or with the run).
                    trio.lowlevel.spawn_system_task(_watch_replies, conn, self.reply_timeout)
            return conn

    async def _connect(self) -> _Connection:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.setblocking(False)
        sock = trio.socket.from_stdlib_socket(raw)
        stream = trio.SocketStream(sock)
        frames = FrameReader()
        try:
            with trio.fail_after(_CONNECT_SECONDS):
                with ShortPath(self.path) as name:
                    await sock.connect(name)
                hello = store_pb2.LocalWritesHello(version=VERSION, feed_token=self.feed_token)
                try:
                    await stream.send_all(encode(hello.SerializeToString()))
                except trio.BrokenResourceError:
                    pass  # refused at once (too many connections, wrong user): the welcome says why
                while (frame := frames.next_frame()) is None:
                    data = await stream.receive_some(_RECV)
                    if not data:
                        raise LocalWritesRefused("the store closed the connection before its welcome")
                    frames.feed(data)
            welcome = store_pb2.LocalWritesWelcome.FromString(frame)
        except (OSError, trio.BrokenResourceError, trio.TooSlowError, FrameError, ValueError) as exc:
            sock.close()
            raise LocalWritesRefused(f"{self.path}: {exc}") from None
        except BaseException:
            sock.close()
            raise
        if welcome.refused or welcome.version != VERSION:
            sock.close()
            raise LocalWritesRefused(f"{self.path}: {welcome.refused or f'protocol version {welcome.version}'}")
        return _Connection(raw, stream, frames)


async def _watch_replies(conn: _Connection, timeout: float) -> None:
    """Fail `conn` once the same write has been the oldest in flight (the first in
    `conn.waiting`: ids grow) for `timeout`, seen at ticks: it has waited at least that long
    for its reply, and the store answers in order of commit. Ends with the connection."""
    tick = min(1.0, timeout / 4)
    oldest, since = 0, 0.0
    while conn.error is None:
        await trio.sleep(tick)
        first = next(iter(conn.waiting), 0)
        now = trio.current_time()
        if first != oldest:
            oldest, since = first, now
        elif first and now - since >= timeout:
            conn.fail(f"the store did not answer a write in {timeout:.0f} s")
