"""The store's local write socket: the Writes stream for a front end on the same host.

Over gRPC a write crosses about ten thread hand-offs in two processes before
its reply is back (store/README.md, "Where one write's time goes"). Here a
front end beside the store connects to a Unix socket in the store's data
directory and sends the same WriteRequests with the same semantics: one
thread per connection reads a request and queues it at the committer
(`write_stream.start_write`, shared with the gRPC stream), and the thread that
finishes the write (the committer's) sends its reply straight into the socket
without waiting (MSG_DONTWAIT). An append that is the connection's only write
in flight, with no further request already arrived, is committed by the
connection's own thread when the committer is idle (store/committer.py, "A lone
write in the caller's thread"): one thread wakes per delivery instead of two.
Only a reply the socket has no room for goes
through the connection's writer thread, as do replies while other writes of
the connection are in flight (sent together, one call per batch: see
`_queue_reply`). Framing: store/local_frames.py.

Who may connect: the directory is the store's private one (0700) and the
socket is 0600; a peer whose SO_PEERCRED uid is neither the store's nor root
is refused anyway. At most MAX_CONNECTIONS at once. A frame over the gRPC
message limit, or one that does not parse, gets a reply with id 0 saying why
and the connection is closed; the other connections go on.

Ending: at shutdown, and when writes are suspended (the node steps down), each
connection refuses new writes, answers those in flight and closes, as the
gRPC stream does at shutdown; the front end then sees its connection end, as
it sees StreamEnded on gRPC, and its next write connects again.
"""

from __future__ import annotations

import collections
import logging
import os
import pathlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Final

from google.protobuf.message import DecodeError

from mailha_api import store_pb2
from store.changefeed import Origin, valid_feed_token
from store.committer import LoneWriter
from store.engine import MailStore
from store.local_frames import VERSION, FrameError, FrameReader, ShortPath, encode, socket_path
from store.write_stream import MAX_IN_FLIGHT, start_write, write_reply

log = logging.getLogger("mailha.store.local_writes")

MAX_CONNECTIONS: Final = 64  # imapd opens one per process
HELLO_SECONDS: Final = 5.0  # a peer that does not say hello in time is dropped
_RECV: Final = 256 * 1024
_UCRED: Final = struct.Struct("3i")  # pid, uid, gid
_INVALID_ARGUMENT: Final = 3  # grpc.StatusCode.INVALID_ARGUMENT's value


def peer_allowed(peer_uid: int, own_uid: int) -> bool:
    """Who may write through the socket: the store's own user, or root."""
    return peer_uid in (own_uid, 0)


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket."""
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return pid, uid, gid


class LocalWritesServer:
    """Listens on `<data_dir>/writes.sock`; `start`, and `close` at shutdown; `end_connections`
    when writes are suspended."""

    def __init__(self, store: MailStore, data_dir: pathlib.Path, *, max_connections: int = MAX_CONNECTIONS) -> None:
        self._store = store
        self.path = socket_path(data_dir)
        self._max_connections = max_connections
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._closed = False
        self._own_uid = os.getuid()
        self._bound: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket file bound by start
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._thread = threading.Thread(target=self._accept, name="store-local-accept", daemon=True)

    def start(self) -> None:
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()  # a stale socket of a dead store
        # No umask dance: the umask is the process's, and another thread creating a directory
        # meanwhile would get it too. Connecting needs write permission on the socket, which
        # bind gives only the owner under any umask that masks group/other write (the services'
        # is 077), and the socket is listening only after the chmod to 0600.
        with ShortPath(self.path) as name:
            self._listener.bind(name)
        os.chmod(self.path, 0o600)
        st = os.stat(self.path)
        self._bound = (st.st_dev, st.st_ino)
        self._listener.listen(16)
        self._thread.start()

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def end_connections(self) -> None:
        """Every open connection: refuse new writes, answer those in flight, close."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.end()

    def close(self) -> None:
        """Stop accepting and end every connection (writes in flight are still answered)."""
        with self._lock:
            self._closed = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join()
        self._listener.close()
        self._unlink_own_socket()
        self.end_connections()

    def _unlink_own_socket(self) -> None:
        """Remove the socket file if it is still the one this store bound. Two stores may have
        the same data directory open at once, one after the other: in an HA hand-over on storage
        every node sees (cluster.yaml `storage.activate: dir`) the new active's store starts, and
        binds its own socket at this path, before the old one stops; removing the path then
        would leave the new store's front ends without it."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) == self._bound:
            self.path.unlink(missing_ok=True)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError as exc:
                with self._lock:
                    if self._closed:
                        return
                log.warning("accepting a local write connection failed: %s", exc)
                time.sleep(0.1)  # out of descriptors, say: not a busy loop
                continue
            refusal = self._refusal(sock)
            if refusal is not None:
                _refuse(sock, refusal)
                continue
            conn = _Connection(self, sock)
            with self._lock:
                if self._closed:
                    refusal = "the store is shutting down"
                elif len(self._connections) >= self._max_connections:
                    refusal = f"too many local write connections (at most {self._max_connections})"
                else:
                    self._connections.add(conn)
            if refusal is not None:
                _refuse(sock, refusal)
                continue
            conn.start()

    def _refusal(self, sock: socket.socket) -> str | None:
        try:
            pid, uid, _gid = peer_credentials(sock)
        except OSError as exc:
            return f"cannot read the peer's credentials: {exc}"
        if not peer_allowed(uid, self._own_uid):
            log.warning("refused a local write connection from pid %d uid %d", pid, uid)
            return f"peer uid {uid} may not write to this store"
        return None

    def forget(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.discard(conn)

    @property
    def store(self) -> MailStore:
        return self._store


def _refuse(sock: socket.socket, why: str) -> None:
    try:
        welcome = store_pb2.LocalWritesWelcome(version=VERSION, refused=why)
        sock.send(encode(welcome.SerializeToString()), socket.MSG_DONTWAIT)
    except OSError:
        pass
    sock.close()


class _Connection:
    """One front end's connection: a reader thread, and a writer thread for replies the
    socket had no room for. The reader thread owns the socket and closes it last."""

    def __init__(self, server: LocalWritesServer, sock: socket.socket) -> None:
        self._server = server
        self._sock = sock
        self._token = ""
        self._lock = threading.Lock()
        self._wake_writer = threading.Condition(self._lock)
        # Replies not yet sent whole (the first one may be partly sent), each with its room to release.
        self._outbox: collections.deque[tuple[memoryview | Callable[[], bytes], Callable[[], None]]] = (
            collections.deque()
        )
        self._room = threading.BoundedSemaphore(MAX_IN_FLIGHT)
        self._in_flight = 0
        self._ending = False  # refuse new writes; close once none is in flight
        self._shut = False  # the socket is shut down: nothing more is sent or read
        self._reader = threading.Thread(target=self._read, name="store-local-writes", daemon=True)
        self._writer = threading.Thread(target=self._write_backlog, name="store-local-replies", daemon=True)

    def start(self) -> None:
        self._reader.start()

    def end(self) -> None:
        with self._lock:
            self._ending = True
            if not self._in_flight:
                self._shutdown_locked()

    # ---- reading (the reader thread) ----------------------------------------------------

    def _read(self) -> None:
        frames = FrameReader()
        lone = LoneWriter()  # this thread's, for the lone writes it commits itself
        try:
            if not self._hello(frames):
                return
            self._writer.start()
            self._serve(frames, lone)
        finally:
            lone.close()
            with self._lock:
                self._shutdown_locked()
                self._wake_writer.notify()
            if self._writer.is_alive():
                self._writer.join()
            self._sock.close()
            self._server.forget(self)

    def _recv_frame(self, frames: FrameReader) -> bytes | None:
        """The next frame; None at the end of the connection. FrameError for a bad one."""
        while (frame := frames.next_frame()) is None:
            try:
                data = self._sock.recv(_RECV)
            except OSError:
                return None
            if not data:
                return None
            frames.feed(data)
        return frame

    def _hello(self, frames: FrameReader) -> bool:
        self._sock.settimeout(HELLO_SECONDS)
        try:
            frame = self._recv_frame(frames)
            if frame is None:
                return False
            hello = store_pb2.LocalWritesHello.FromString(frame)
        except (FrameError, DecodeError) as exc:
            self._send_now(_welcome(f"bad frame: expected a LocalWritesHello: {exc}"))
            return False
        if hello.version != VERSION:
            self._send_now(_welcome(f"protocol version {hello.version} is not {VERSION}"))
            return False
        if hello.feed_token and not valid_feed_token(hello.feed_token):
            self._send_now(_welcome("the feed token is not valid"))
            return False
        self._token = hello.feed_token
        self._sock.settimeout(None)
        return self._send_now(_welcome(""))

    def _serve(self, frames: FrameReader, lone: LoneWriter) -> None:
        store = self._server.store
        while True:
            try:
                frame = self._recv_frame(frames)
                if frame is None:
                    return
                req = store_pb2.WriteRequest.FromString(frame)
            except (FrameError, DecodeError) as exc:
                log.warning("closing a local write connection: bad frame (%s)", exc)
                self._queue_reply(self._bad_frame(str(exc)))
                return
            if req.id == 0:
                self._queue_reply(self._bad_frame("a WriteRequest needs an id other than 0"))
                return
            self._room.acquire()
            with self._lock:
                if self._shut:
                    self._room.release()
                    return
                self._in_flight += 1
                only = self._in_flight == 1
                ending = self._ending
            origin = Origin(self._token) if self._token else None
            # Commit it here only if nothing else of this connection waits: while this thread
            # commits it reads no request, and requests that come together should share a commit.
            here = lone if only and not frames.buffered and not self._readable() else None
            field, fut = start_write(store, req, origin, ending=ending, here=here)
            fut.add_done_callback(self._finisher(req.id, field, origin))
            lone.run_later()  # after the reply: what a batch this thread ran left for then

    def _readable(self) -> bool:
        """Whether more bytes from the peer are already waiting in the socket."""
        try:
            return bool(self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except BlockingIOError:
            return False
        except OSError:
            return True  # the next recv reports it

    def _bad_frame(self, why: str) -> bytes:
        reply = store_pb2.WriteReply(id=0, error_code=_INVALID_ARGUMENT, error_message=f"bad frame: {why}")
        return encode(reply.SerializeToString())

    # ---- replies ------------------------------------------------------------------------

    def _finisher(self, rid: int, field: str, origin: Origin | None) -> Callable[[Future[Any]], None]:
        def finish(fut: Future[Any]) -> None:
            # The committer's thread (or the reader's, for a refused write).
            self._queue_reply(lambda: encode(write_reply(rid, field, fut, origin).SerializeToString()), self._answered)

        return finish

    def _answered(self) -> None:
        self._room.release()
        with self._lock:
            self._in_flight -= 1
            if self._ending and not self._in_flight:
                self._shutdown_locked()

    def _queue_reply(self, reply: bytes | Callable[[], bytes], sent: Callable[[], None] = lambda: None) -> None:
        """The reply of the only write in flight goes straight into the socket if it takes it
        whole (one session: no hand-off). With others in flight (their replies are likely in
        the same group commit) it goes to the writer thread, which sends all that are queued
        in one call: a send releases the GIL, and the committer thread would wait to get it
        back after each one while the store's other threads run. The writer thread also
        builds those replies (`reply` may be a function making the frame), as the Writes
        call's own thread does, so the committer goes on to its next batch."""
        item: memoryview | Callable[[], bytes] = memoryview(reply) if isinstance(reply, bytes) else reply
        with self._lock:
            if not self._shut and not self._outbox and self._in_flight <= 1:
                item = view = memoryview(item()) if callable(item) else item
                try:
                    item = view[self._sock.send(view, socket.MSG_DONTWAIT) :]
                except BlockingIOError:
                    pass
                except OSError:
                    self._shutdown_locked()
            if not self._shut and (callable(item) or item):
                self._outbox.append((item, sent))
                self._wake_writer.notify()
                return
        sent()  # sent, or the peer is gone: nobody is waiting for it any more

    def _send_now(self, data: bytes) -> bool:
        """A reply during the hello, before the writer thread runs (a blocking send)."""
        try:
            self._sock.sendall(data)
            return True
        except OSError:
            return False

    def _write_backlog(self) -> None:
        while True:
            with self._lock:
                while not self._outbox and not self._shut:
                    self._wake_writer.wait()
                if self._shut:
                    left, self._outbox = list(self._outbox), collections.deque()
                    break
                # They stay queued while sent, so a reply finished meanwhile queues behind them.
                batch = list(self._outbox)
            try:
                self._sock.sendall(b"".join(part() if callable(part) else part for part, _ in batch))
            except OSError:
                with self._lock:
                    self._shutdown_locked()
                continue
            with self._lock:
                for _ in batch:
                    self._outbox.popleft()
            for _view, sent in batch:
                sent()
        for _view, sent in left:
            sent()

    def _shutdown_locked(self) -> None:
        if not self._shut:
            self._shut = True
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the reader (and a blocked sendall)
            except OSError:
                pass
            self._wake_writer.notify()


def _welcome(refused: str) -> bytes:
    return encode(store_pb2.LocalWritesWelcome(version=VERSION, refused=refused).SerializeToString())
