"""The trio IMAP server: listeners, one task per connection, a thin loop
around the sans-IO parser that hands events to the session.

Every connection lives in the server's nursery; nothing a client sends can
crash the server (an unexpected exception ends that one connection, and a
handler's exception is answered NO [SERVERBUG] by the session). When the
store says this writer is fenced, or on SIGTERM/SIGUSR1 (switchover drain),
every connection gets "* BYE [UNAVAILABLE] ..." and is closed.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import trio

from imapd.deflate_stream import DeflateStream
from imapd.prelogin_slots import AddressSlots
from imapd.protocol import events as ev
from imapd.protocol.deflate import DeflateError
from imapd.protocol.parser import CommandParser, ParserLimits
from imapd.protocol.states import APPEND_VALID_IN, ConnectionState
from imapd.session import append_flow, auth_commands, idle_flow
from imapd.session.context import ServerContext, ServerSettings
from imapd.session.dispatch import CONTEXT_REFRESH, HANDLERS
from imapd.session.out_parts import Part, coalesced, consume
from imapd.session.session import Outcome, Session
from imapd.store_client import StoreClient
from imapd.watch_hub import WatchHub
from nodeconf.frontend_metrics import FrontEndMetrics

log = logging.getLogger("imapd.server")

_READ_SIZE: Final = 65536
_SEND_TIMEOUT: Final = 120.0
_IOV_MAX: Final = 1024  # buffers one writev takes (Linux's UIO_MAXIOV)
# How long a BYE waits for the command in progress, so a drill does not cut a
# client off between the store's commit and the tagged OK.
_COMMAND_GRACE: Final = 1.0


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    implicit_tls: bool


_CLIENT_GONE: Final = (
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
    ssl.SSLError,
    ConnectionError,
)


def client_gone(exc: BaseException) -> str | None:
    """Why the client went away, if that is all `exc` says (also inside exception groups); else None."""
    if isinstance(exc, BaseExceptionGroup):
        reasons = [client_gone(inner) for inner in exc.exceptions]
        if any(r is None for r in reasons):
            return None
        return str(reasons[0])
    if not isinstance(exc, _CLIENT_GONE):
        return None
    cause = exc.__cause__ or exc.__context__
    detail = f"{type(exc).__name__}" + (f" ({type(cause).__name__})" if isinstance(cause, OSError) else "")
    return detail


def _socket_error(exc: OSError) -> trio.ClosedResourceError | trio.BrokenResourceError:
    """A failed read or write on the plain socket, as trio's SocketStream reports it."""
    if exc.errno == errno.EBADF:
        return trio.ClosedResourceError("the connection was closed")
    return trio.BrokenResourceError(f"socket connection broken: {exc}")


def parse_endpoint(text: str, implicit_tls: bool) -> Endpoint:
    host, _, port = text.rpartition(":")
    return Endpoint(host or "127.0.0.1", int(port), implicit_tls)


class CommandGate:
    """Commands run one at a time; `close` (a BYE from outside) waits a bounded time for the
    running one and keeps any further one from starting.

    Entering and leaving uncontended (always, but during a BYE) is a few attribute
    writes: a trio.Lock there cost about ten Python calls per command (issue 13).
    """

    def __init__(self) -> None:
        self.running = False
        self.closed = False
        self._left: trio.Event | None = None  # set when the running command ends, while `close` waits

    def enter_now(self) -> bool:
        """Enter without a coroutine (every command): False while the gate is closed."""
        if self.closed:
            return False
        self.running = True
        return True

    async def enter(self) -> None:
        if self.closed:
            await trio.sleep_forever()  # the connection is being closed: its cancellation comes
        self.running = True

    def leave(self) -> None:
        self.running = False
        left, self._left = self._left, None
        if left is not None:
            left.set()

    async def close(self, grace: float) -> None:
        self.closed = True
        with trio.move_on_after(grace):
            while self.running:
                if self._left is None:
                    self._left = trio.Event()
                await self._left.wait()


class Connection:
    """One client connection; implements the session's `Wire`."""

    def __init__(self, stream: trio.abc.Stream, peer: str, tls: bool, handshake_timeout: float = 15.0) -> None:
        self.stream = stream
        self._handshake_timeout = handshake_timeout
        # Holds one of the address's pre-login slots until it logs in or goes.
        self.prelogin = False
        self._peer = peer
        self._tls = tls
        self._send_lock = trio.Lock()
        # The TCP socket under any TLS layer, for the per-read ACK below.
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        # While the stream is that plain socket, `send` writes to it directly first and
        # `receive` reads it directly (see there).
        self._plain = stream if isinstance(stream, trio.SocketStream) else None
        self._fd = self._socket.fileno() if self._socket is not None else -1
        # Entered while a command runs; BYE from outside waits for it (bounded).
        self.commands = CommandGate()
        self.scope = trio.CancelScope()
        self.closing = False
        self.preauth_deadline = float("inf")
        # When (time.perf_counter) and for which state the read loop last moved its autologout deadline.
        self.deadline_moved = float("-inf")
        self.deadline_idling = False

    @property
    def peer(self) -> str:
        return self._peer

    @property
    def tls_active(self) -> bool:
        return self._tls

    def send_now(self, parts: Sequence[Part]) -> int:
        """What the plain socket takes of `parts` at once (one writev) when no other send is
        waiting (the session's usual reply: one system call, no coroutine); 0 otherwise."""
        if self._plain is not None and self.stream is self._plain and not self._send_lock.locked():
            return self._writev_now(parts)
        return 0

    async def send_parts(self, parts: list[Part]) -> None:
        """`parts` in order. On the plain socket with writev as the socket takes them, never
        joined or sliced into new bytes: a FETCH of a 1 MiB body had its literal copied once
        more for each partial write (`data[sent:]`) and went out in four writes (issue 13)."""
        if self._plain is None or self.stream is not self._plain:
            for data in coalesced(parts):
                await self.send(data)
            return
        async with self._send_lock:
            with trio.fail_after(_SEND_TIMEOUT):
                while parts:
                    sent = self._writev_now(parts)
                    consume(parts, sent)
                    if parts:
                        await trio.lowlevel.wait_writable(self._fd)

    async def send(self, data: Part) -> None:
        if self._plain is not None and self.stream is self._plain and not self._send_lock.locked():
            # Fast path: a response fits the socket buffer almost always. Writing it straight
            # away spares the lock's and send_all's scheduler round trips (each a pass through
            # trio's run loop with an epoll call: most of a small command's cost, issue 13).
            # Nothing awaits between the check and the write, so no other sender can interleave.
            sent = self._write_now(data)
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
        async with self._send_lock:
            # A client that stops reading must not pin us forever.
            with trio.fail_after(_SEND_TIMEOUT):
                await self.stream.send_all(data)

    async def receive(self) -> bytes | bytearray:
        """The next bytes from the client (b"" at its end), as `stream.receive_some` gives them.

        On the plain socket: wait until it is readable, then read it directly. A client
        has nothing to send before our answer to its last command reached it, so trying
        the read first (as `SocketStream.receive_some` does) would fail almost always,
        costing a syscall and an exception per command (issue 13). `wait_readable` is a
        checkpoint: a client that pipelines commands still yields to other connections.
        """
        if self._plain is None or self.stream is not self._plain:
            return await self.stream.receive_some(_READ_SIZE)
        while True:
            await trio.lowlevel.wait_readable(self._fd)
            try:
                return os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                continue  # readable, then not (another reader raced us): wait again
            except OSError as exc:
                raise _socket_error(exc) from exc

    def read_now(self) -> bytes | None:
        """What the plain socket holds now (b"" at the client's end), without waiting; None when
        it holds nothing, or the stream is not the plain socket (TLS, COMPRESS)."""
        if self._plain is None or self.stream is not self._plain:
            return None
        try:
            return os.read(self._fd, _READ_SIZE)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise _socket_error(exc) from exc

    def _writev_now(self, parts: Sequence[Part]) -> int:
        """Bytes of `parts` the (non-blocking) socket took at once, in one writev."""
        try:
            return os.writev(self._fd, parts[:_IOV_MAX] if len(parts) > _IOV_MAX else parts)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise _socket_error(exc) from exc

    def _write_now(self, data: Part) -> int:
        """Bytes of `data` the (non-blocking) socket took at once; errors as trio's stream gives them."""
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise _socket_error(exc) from exc

    def ack_now(self) -> None:
        """Acknowledge what we have read at once instead of after the delayed-ACK timer.

        A client that writes a literal and its final CRLF in two sends (imaplib
        does) with Nagle on holds the CRLF until the literal is acknowledged; we
        answer nothing before the CRLF, so Linux's delayed ACK (40 ms, longer in
        "ping-pong" mode) stalled every such command. TCP_QUICKACK is not sticky:
        the kernel drops back to delayed ACKs by itself, so it is set after each read
        that leaves a command unfinished (a complete command's answer carries the ACK).
        """
        if self._socket is not None:
            try:
                self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            except OSError:
                pass

    def request_close(self) -> None:
        self.closing = True
        self.scope.cancel()

    async def bye(self, text: bytes) -> None:
        """Best-effort BYE from outside the connection's task, then close it.

        A command in progress may finish first (up to _COMMAND_GRACE), so a client
        whose APPEND the store has committed also gets its tagged OK; the closed
        gate keeps any further command from starting.
        """
        await self.commands.close(_COMMAND_GRACE)
        try:
            with trio.move_on_after(2):
                try:
                    await self.send(b"* BYE " + text + b"\r\n")
                except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError, trio.TooSlowError):
                    pass
        finally:
            self.request_close()

    async def upgrade_tls(self, ssl_context: ssl.SSLContext) -> None:
        tls_stream = trio.SSLStream(self.stream, ssl_context, server_side=True)
        with trio.fail_after(self._handshake_timeout):
            await tls_stream.do_handshake()
        self.stream = tls_stream
        self._tls = True
        # The client's last handshake flight is read and we send nothing until its next
        # command, which a client with Nagle on (imaplib) holds until that flight is
        # acknowledged: without this, Linux's delayed ACK cost every STARTTLS 40 ms.
        self.ack_now()


@dataclass
class ImapServer:
    ctx: ServerContext
    ssl_context: ssl.SSLContext | None
    connections: set[Connection] = field(default_factory=set)
    draining: bool = False
    metrics: FrontEndMetrics | None = None
    prelogin: AddressSlots = field(init=False)

    def __post_init__(self) -> None:
        settings = self.ctx.settings
        self.prelogin = AddressSlots(settings.max_prelogin_per_address, settings.prelogin_patience)

    # ---- one connection -------------------------------------------------------------
    async def handle_stream(self, stream: trio.abc.Stream, peer: str, implicit_tls: bool) -> None:
        settings = self.ctx.settings
        conn = Connection(stream, peer, tls=False, handshake_timeout=settings.tls_handshake_timeout)
        # The absolute pre-login deadline starts now, TLS handshake included.
        conn.preauth_deadline = trio.current_time() + settings.preauth_timeout
        if self.metrics is not None:
            self.metrics.session_opened()
        try:
            if not await self.prelogin.acquire(peer):
                log.info("connection from %s refused: %d not logged in yet", peer, self.prelogin.held(peer))
                if not implicit_tls:
                    with trio.move_on_after(1):
                        await stream.send_all(b"* BYE [UNAVAILABLE] Too many connections from your address\r\n")
                return
            conn.prelogin = True
            if implicit_tls:
                assert self.ssl_context is not None
                await conn.upgrade_tls(self.ssl_context)
            self.connections.add(conn)
            await self._serve(conn)
        except Exception as exc:
            # The read loop runs in a nursery: a reset arrives wrapped in an ExceptionGroup.
            gone = client_gone(exc)
            if gone is None:
                log.exception("connection from %s failed", peer)
            else:
                log.info("connection from %s ended by the client: %s", peer, gone)
        finally:
            self.connections.discard(conn)
            self.release_prelogin(conn)
            if self.metrics is not None:
                self.metrics.session_closed()
            if not self.connections:
                self.ctx.memory.note()
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                try:
                    await conn.stream.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
                    pass

    def release_prelogin(self, conn: Connection) -> None:
        if conn.prelogin:
            conn.prelogin = False
            self.prelogin.release(conn.peer)

    async def _serve(self, conn: Connection) -> None:
        settings = self.ctx.settings
        session = Session(self.ctx, conn, HANDLERS, CONTEXT_REFRESH)
        limits = ParserLimits(append_limit=settings.append_limit)
        parser = CommandParser(limits)
        try:
            with conn.scope:
                if self.draining or self.ctx.fenced.is_set():
                    await conn.send(b"* BYE [UNAVAILABLE] Server is not accepting connections\r\n")
                    return
                if len(self.connections) > settings.max_connections:
                    await conn.send(b"* BYE [UNAVAILABLE] Too many connections, try later\r\n")
                    return
                await conn.send(b"* OK " + session.capability_code() + b" mailha IMAP ready\r\n")
                async with trio.open_nursery() as nursery:
                    await self._read_loop(conn, session, parser, nursery)
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await session.close()

    async def _read_loop(
        self, conn: Connection, session: Session, parser: CommandParser, nursery: trio.Nursery
    ) -> None:
        # One deadline for the whole connection, moved as the client stays active; a
        # cancel scope per read cost ~6 us of CPU per command (issue 13).
        with trio.CancelScope() as timer:
            await self._commands(conn, session, parser, nursery, timer)
        if timer.cancelled_caught:
            await conn.send(b"* BYE Autologout; idle for too long\r\n")

    def _move_deadline(self, timer: trio.CancelScope, session: Session, conn: Connection) -> None:
        """Set `timer` to when this client, silent from now on, is logged out.

        Before login the deadline is absolute (bytes trickling in do not extend it).
        After it, the deadline moves forward only once it lags by more than an eighth
        of the timeout (at most a second), so a busy client does not pay for moving it
        on every command; a command runs long before its deadline could strike it.
        """
        settings = self.ctx.settings
        if session.state is ConnectionState.NOT_AUTHENTICATED:
            if timer.deadline != conn.preauth_deadline:
                timer.deadline = conn.preauth_deadline
            return
        idling = session.idle_tag is not None
        timeout = settings.idle_timeout + 60 if idling else settings.autologout
        # perf_counter (trio's clock, without its offset) to tell whether the deadline lags.
        now = time.perf_counter()
        if idling == conn.deadline_idling and now - conn.deadline_moved < min(1.0, timeout / 8):
            return
        timer.deadline = trio.current_time() + timeout
        conn.deadline_moved, conn.deadline_idling = now, idling

    async def _commands(
        self,
        conn: Connection,
        session: Session,
        parser: CommandParser,
        nursery: trio.Nursery,
        timer: trio.CancelScope,
    ) -> None:
        settings = self.ctx.settings
        appending: append_flow.AppendInProgress | None = None
        discarded_reply = b""
        metrics = self.metrics
        started = 0.0
        look_now = False  # after an ACK that may have let the rest of the command out (see below)
        while True:
            data: bytes | bytearray | None = conn.read_now() if look_now else None
            awaited = data is None
            if awaited:
                self._move_deadline(timer, session, conn)  # (it matters only while we wait)
                try:
                    data = await conn.receive()
                except DeflateError:
                    await conn.send(b"* BYE Invalid compressed data\r\n")
                    return
            if not data:
                return
            parser.receive_data(bytes(data))
            # A continuation written after this read carried its ACK (the socket has
            # TCP_NODELAY): no separate ACK is needed while the client sends the literal.
            acked = False
            while True:
                # The event classes are final: `type(event) is` costs no call down this chain
                # (an isinstance did, about 30 per APPEND: issue 13).
                event = parser.next_event()
                if event is ev.NEED_DATA:
                    look_now = False
                    if parser.mid_command and not acked:
                        conn.ack_now()  # no answer will carry the ACK until the client sends the rest
                        # A Nagle client holding the rest until this ACK (imaplib's CRLF after the
                        # literal) sends it as the ACK arrives; on loopback before we could wait
                        # for it. Look once before waiting (only after a read that waited: the
                        # loop still reaches a checkpoint however fast a client sends, issue 13).
                        look_now = awaited
                    break
                outcome = Outcome.CONTINUE
                if type(event) is ev.CommandReceived:
                    if metrics is not None:
                        started = trio.current_time()
                    session.last_status = b""
                    if not conn.commands.enter_now():
                        await conn.commands.enter()
                    try:
                        outcome = await session.handle(event.tag, event.command)
                    finally:
                        conn.commands.leave()
                    if metrics is not None:
                        self._count(type(event.command).__name__.upper(), session, started)
                    if session.enabled:
                        # ENABLE UTF8=ACCEPT / IMAP4rev2: 8-bit mailbox names are UTF-8 from the next command on.
                        parser.utf8_names = session.utf8_names
                    if not parser.authenticated and session.state is not ConnectionState.NOT_AUTHENTICATED:
                        parser.set_authenticated()
                        self.release_prelogin(conn)
                elif type(event) is ev.ContinuationNeeded:
                    await conn.send(b"+ Ready for literal data\r\n")
                    parser.accept_literal()
                    acked = True
                elif type(event) is ev.AppendStart:
                    if session.state not in APPEND_VALID_IN:
                        await conn.send(event.tag.encode() + b" BAD Command not allowed in this state\r\n")
                        parser.discard_command()
                    else:
                        appending = append_flow.begin(session, event.tag, event.mailbox)
                elif type(event) is ev.AppendMessageStart:
                    if appending is not None:
                        append_flow.message_start(appending, event.flags, event.internal_date, event.binary)
                elif type(event) is ev.AppendChunk:
                    if appending is not None:
                        append_flow.chunk(appending, event.data)
                        if appending.total > max(settings.append_limit, settings.append_total_limit):
                            # A MULTIAPPEND may not make us hold more than this: skip the rest.
                            parser.discard_command()
                            discarded_reply = b" NO [TOOBIG] APPEND too large in total\r\n"
                            appending = None
                elif type(event) is ev.AppendMessageEnd:
                    if appending is not None:
                        append_flow.message_end(appending)
                elif type(event) is ev.AppendRest:
                    if appending is not None:
                        await conn.commands.enter()
                        try:
                            await append_flow.add_messages(session, appending, event.messages)
                        finally:
                            conn.commands.leave()
                elif type(event) is ev.AppendEnd:
                    if appending is not None:
                        if metrics is not None:
                            started = trio.current_time()
                        session.last_status = b""
                        if not conn.commands.enter_now():
                            await conn.commands.enter()
                        try:
                            outcome = await append_flow.commit(session, appending)
                        finally:
                            conn.commands.leave()
                        if metrics is not None:
                            self._count("APPEND", session, started)
                    appending = None
                elif type(event) is ev.LiteralTooBig:
                    appending = None
                    tag = (event.tag or "*").encode()
                    await conn.send(
                        tag + b" NO [TOOBIG] Literal of %d bytes exceeds %d\r\n" % (event.size, event.limit)
                    )
                elif type(event) is ev.CommandDiscarded:
                    appending = None
                    if discarded_reply and event.tag is not None:
                        await conn.send(event.tag.encode() + discarded_reply)
                    discarded_reply = b""
                elif type(event) is ev.BadCommand:
                    appending = None
                    outcome = await self._bad(conn, session, event)
                elif type(event) is ev.IdleDone:
                    self._stop_idle(session)
                    outcome = await idle_flow.done(session, event.tag)
                elif type(event) is ev.AuthResponse:
                    outcome = await auth_commands.auth_response(session, event.tag, event.data)
                    if session.state is not ConnectionState.NOT_AUTHENTICATED:
                        parser.set_authenticated()
                        self.release_prelogin(conn)
                if outcome is Outcome.CLOSE:
                    return
                if outcome is Outcome.START_TLS:
                    parser.take_unprocessed()  # plaintext sent after STARTTLS: injection, dropped
                    assert self.ssl_context is not None
                    await conn.upgrade_tls(self.ssl_context)
                elif outcome is Outcome.START_COMPRESS:
                    conn.stream = DeflateStream(conn.stream, pending=parser.take_unprocessed())
                elif outcome is Outcome.AWAIT_AUTH:
                    assert session.pending_auth_tag is not None
                    parser.begin_auth_response(session.pending_auth_tag)
                elif outcome is Outcome.IDLING:
                    assert session.idle_tag is not None
                    parser.begin_idle(session.idle_tag)
                    session.idle_cancel = await nursery.start(idle_flow.pump, session)

    def _stop_idle(self, session: Session) -> None:
        if session.idle_cancel is not None:
            session.idle_cancel.cancel()
            session.idle_cancel = None

    async def _bad(self, conn: Connection, session: Session, event: ev.BadCommand) -> Outcome:
        if event.reason is ev.BadReason.EXPECTED_DONE:
            self._stop_idle(session)
            session.idle_tag = None
        if session.pending_auth_tag is not None and event.tag == session.pending_auth_tag:
            session.pending_auth_tag = None
        tag = (event.tag or "*").encode()
        text = event.text.encode("ascii", "replace")
        if event.reason is ev.BadReason.BAD_CHARSET:
            if event.forgets_saved and session.selected is not None:
                session.selected.saved_search = ()
            await conn.send(tag + b" NO [BADCHARSET (UTF-8 US-ASCII)] " + text + b"\r\n")
            return Outcome.CONTINUE
        code = b"[TOOBIG] " if event.reason in (ev.BadReason.LINE_TOO_LONG, ev.BadReason.COMMAND_TOO_LONG) else b""
        session.bad_commands += 1
        if session.bad_commands >= self.ctx.settings.max_bad_commands:
            await conn.send(tag + b" BAD " + code + text + b"\r\n* BYE Too many invalid commands\r\n")
            return Outcome.CLOSE
        await conn.send(tag + b" BAD " + code + text + b"\r\n")
        return Outcome.CONTINUE

    # ---- whole-server events --------------------------------------------------------
    async def bye_all(self, text: bytes) -> None:
        async with trio.open_nursery() as nursery:
            for conn in list(self.connections):
                nursery.start_soon(conn.bye, text)

    def _count(self, command: str, session: Session, started: float) -> None:
        if self.metrics is not None:
            result = session.last_status.decode("ascii", "replace") or "none"
            self.metrics.command(command, result, trio.current_time() - started)

    async def _watch_fence(self) -> None:
        await self.ctx.fenced.wait()
        log.warning("store says this imapd is fenced; closing every connection")
        await self.bye_all(b"[UNAVAILABLE] This server is no longer the writer; reconnect")

    async def drain(self) -> None:
        self.draining = True
        log.info("draining %d connections", len(self.connections))
        await self.bye_all(b"[UNAVAILABLE] server moving, reconnect")


async def serve(
    store: StoreClient,
    settings: ServerSettings,
    ssl_context: ssl.SSLContext | None,
    endpoints: Sequence[Endpoint],
    *,
    handle_signals: bool = True,
    reuse_port: bool = False,
    metrics: FrontEndMetrics | None = None,
    task_status: trio.TaskStatus[tuple[ImapServer, list[int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until SIGTERM/SIGUSR1 (drain) or cancellation; started() gets the bound ports."""
    async with trio.open_nursery() as nursery:
        hub = WatchHub(
            store,
            nursery,
            linger=settings.mailbox_linger,
            buffer=settings.watch_buffer,
            account_buffer=settings.notify_buffer,
        )
        ctx = ServerContext(store, hub, settings)
        server = ImapServer(ctx, ssl_context, metrics=metrics)
        nursery.start_soon(ctx.memory.run, lambda: not server.connections)
        listeners: list[tuple[trio.SocketListener, bool]] = []
        ports: list[int] = []
        for ep in endpoints:
            opened = (
                [await _reuse_port_listener(ep)] if reuse_port else await trio.open_tcp_listeners(ep.port, host=ep.host)
            )
            for listener in opened:
                listeners.append((listener, ep.implicit_tls))
                ports.append(listener.socket.getsockname()[1])
        nursery.start_soon(server._watch_fence)
        for listener, implicit in listeners:
            nursery.start_soon(_accept_loop, server, listener, implicit, nursery)
        if handle_signals:
            nursery.start_soon(_signals, server, nursery)
        task_status.started((server, ports))


async def _reuse_port_listener(ep: Endpoint) -> trio.SocketListener:
    """A listener several worker processes share (the kernel spreads connections)."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
    sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEPORT, 1)
    await sock.bind((ep.host, ep.port))
    sock.listen(511)
    return trio.SocketListener(sock)


async def _accept_loop(
    server: ImapServer, listener: trio.SocketListener, implicit: bool, nursery: trio.Nursery
) -> None:
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # EMFILE and friends: wait, do not die
                log.warning("accept failed: %s", exc)
                await trio.sleep(0.1)
                continue
            try:
                peer = str(stream.socket.getpeername()[0])
            except OSError:
                await stream.aclose()
                continue
            nursery.start_soon(server.handle_stream, stream, peer, implicit)


async def _signals(server: ImapServer, nursery: trio.Nursery) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGUSR1, signal.SIGINT) as signals:
        async for _ in signals:
            await server.drain()
            nursery.cancel_scope.cancel()
            return
