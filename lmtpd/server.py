"""The trio LMTP server: a thin loop around the sans-IO core.

Per connection: feed bytes to the core, answer each event, and write the
accumulated replies only when the core needs more input, so a pipelined
batch of commands (RFC 2920) costs one write. Mail goes to the store only
through a MailDropSession.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio

from lmtpd import replies
from lmtpd.delivery import DeliveryResult, MailDrop, MailDropSession, Outcome, Recipient
from lmtpd.events import (
    NEED_DATA,
    ConnectionClosed,
    Data,
    DataChunk,
    DataEnd,
    Lhlo,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Rejected,
    Rset,
    Vrfy,
)
from lmtpd.protocol import LmtpConnection
from lmtpd.spool import Spool
from nodeconf.frontend_metrics import FrontEndMetrics

log = logging.getLogger("mailha.lmtpd")

_RECEIVE_SIZE = 256 * 1024
# Per transaction; keeps memory bounded. RFC 5321 4.5.3.1.8 asks for at least 100,
# and a 452 makes the client send the rest in another transaction.
MAX_RECIPIENTS = 1000


@dataclass(frozen=True)
class LmtpdOptions:
    max_message_size: int
    # gethostname, not getfqdn: no DNS lookup that could stall start-up inside a namespace.
    hostname: str = field(default_factory=socket.gethostname)
    # Over quota: 452 4.2.2 (MTA retries) instead of 552 5.2.2 (bounce).
    quota_tempfail: bool = False
    idle_timeout: float = 300.0
    spool_dir: str | None = None
    # Concurrent connections (Postfix's default_process_limit is 100); more get 421 at once.
    max_connections: int = 100
    metrics: FrontEndMetrics | None = field(default=None, compare=False)


@dataclass
class _Transaction:
    sender: str
    recipients: list[Recipient] = field(default_factory=list)
    spool: Spool | None = None

    def discard_spool(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None


def trace_headers(sender: str, recipient: Recipient) -> bytes:
    """Return-Path and Delivered-To, prepended to what this recipient stores.

    Addresses come from parsed command lines, and the parser refuses control
    characters in paths, so they cannot inject header lines.
    """
    return f"Return-Path: <{sender}>\r\nDelivered-To: {recipient.address}\r\n".encode()


class _Connection:
    def __init__(self, stream: trio.abc.Stream, options: LmtpdOptions, session: MailDropSession) -> None:
        self.stream = stream
        self.options = options
        self.session = session
        self.core = LmtpConnection(max_message_size=options.max_message_size)
        self.out = bytearray(replies.greeting(options.hostname).to_bytes())
        self.txn: _Transaction | None = None
        self.idle = trio.CancelScope()  # replaced by the one `run` waits in
        # The client's socket (non-blocking, as trio keeps it), for replies sent without a checkpoint.
        self.fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        # Delivery outcomes to log after the next write (user, result, message size).
        self.outcomes: list[tuple[str, DeliveryResult, int]] = []

    async def run(self) -> None:
        try:
            # One scope for the connection's idle timeout, its deadline set only while waiting for
            # the client (a scope entered per wait cost as much as the rest of that wait's code).
            with trio.CancelScope() as self.idle:
                await self._loop()
            if self.idle.cancelled_caught:
                self.out += replies.idle_timeout().to_bytes()
                await self._flush()
        finally:
            self._log_outcomes()
            if self.txn is not None:
                self.txn.discard_spool()

    async def _loop(self) -> None:
        core = self.core
        while True:
            event = core.next_event()
            if event is NEED_DATA:
                await self._flush()
                self.idle.deadline = trio.current_time() + self.options.idle_timeout
                data = await self.stream.receive_some(_RECEIVE_SIZE)
                self.idle.deadline = math.inf
                core.receive_data(data)
            elif isinstance(event, DataChunk):
                assert self.txn is not None and self.txn.spool is not None
                self.txn.spool.write(event.data)
            elif isinstance(event, DataEnd):
                await self._end_of_data(event)
            elif isinstance(event, Quit):
                self._reply(replies.BYE)
                await self._flush()
                return
            elif isinstance(event, ConnectionClosed):
                return
            else:
                started = time.monotonic()
                reply = await self._answer(event)
                self._reply(reply)
                if self.options.metrics is not None:
                    name = "REJECTED" if isinstance(event, Rejected) else type(event).__name__.upper()
                    self.options.metrics.command(name, str(reply.code), time.monotonic() - started)

    async def _answer(self, event: Lhlo | MailFrom | RcptTo | Data | Rset | Noop | Vrfy | Rejected) -> replies.Reply:
        opts = self.options
        if isinstance(event, Rejected):
            return event.reply
        if isinstance(event, Lhlo):
            self._reset()
            return replies.lhlo_ok(opts.hostname, opts.max_message_size)
        if isinstance(event, MailFrom):
            if event.size is not None and event.size > opts.max_message_size:
                return replies.too_big_announced(opts.max_message_size)
            self.txn = _Transaction(event.reverse_path)
            return replies.OK_MAIL
        if isinstance(event, RcptTo):
            assert self.txn is not None
            if len(self.txn.recipients) >= MAX_RECIPIENTS:
                return replies.TOO_MANY_RECIPIENTS
            found = await self.session.resolve(event.forward_path)
            if found.outcome is Outcome.DELIVERED:
                self.txn.recipients.append(Recipient(event.forward_path, found.user))
            return replies.for_resolution(found.outcome, event.forward_path, quota_tempfail=opts.quota_tempfail)
        if isinstance(event, Data):
            assert self.txn is not None
            self.txn.spool = Spool(directory=opts.spool_dir)
            return replies.GO_AHEAD
        if isinstance(event, Rset):
            self._reset()
            return replies.OK_RSET
        if isinstance(event, Noop):
            return replies.OK_NOOP
        return replies.VRFY_CANNOT

    async def _end_of_data(self, end: DataEnd) -> None:
        txn = self.txn
        assert txn is not None and txn.spool is not None
        self.txn = None
        try:
            if end.too_big:
                for _ in txn.recipients:
                    self._reply(replies.too_big(self.options.max_message_size))
                return
            prefixes = [trace_headers(txn.sender, r) for r in txn.recipients]
            started = time.monotonic()
            results = await self.session.deliver(txn.recipients, prefixes, txn.spool)
            took = time.monotonic() - started
        finally:
            txn.discard_spool()
        if self.options.metrics is not None:
            for result in results:
                self.options.metrics.deliveries.labels(result.outcome.value).inc()
                self.options.metrics.command("DELIVER", result.outcome.value, took)
        for recipient, result in zip(txn.recipients, results, strict=True):
            self.outcomes.append((recipient.user, result, end.size))
            self._reply(
                replies.for_outcome(
                    result.outcome, recipient.address, uid=result.uid, quota_tempfail=self.options.quota_tempfail
                )
            )

    def _reset(self) -> None:
        if self.txn is not None:
            self.txn.discard_spool()
        self.txn = None

    def _reply(self, reply: replies.Reply) -> None:
        self.out += self.core.send(reply)

    async def _flush(self) -> None:
        try:
            if self.out:
                data = bytes(self.out)
                self.out.clear()
                rest = self._send_now(data)
                if rest:
                    await self.stream.send_all(rest)
        finally:
            # Logged once the replies are out: the MTA does not wait for the log line.
            self._log_outcomes()

    def _send_now(self, data: bytes) -> bytes:
        """What of `data` the client's socket did not take at once. Replies are small and the
        socket's buffer is nearly always empty when they go: written straight to the socket
        they skip send_all's checkpoint, a scheduling round (two per delivery) for a send
        that never waits. The connection's only task sends, so nothing is reordered; what is
        left, and any error (send_all raises the stream's own), goes through send_all. Other
        streams (tests' memory streams) send everything there."""
        if self.fd < 0:
            return data
        try:
            return data[os.write(self.fd, data) :]
        except OSError:  # full (BlockingIOError), or broken: send_all waits or says so
            return data

    def _log_outcomes(self) -> None:
        for user, result, size in self.outcomes:
            # Envelope facts only: logs never carry message content.
            if result.outcome is Outcome.DELIVERED:
                again = f" ({result.detail})" if result.detail else ""
                log.info("delivered: user=%s uid=%d size=%d%s", user, result.uid, size, again)
            else:
                log.info("refused: user=%s %s (%s)", user, result.outcome.value, result.detail)
        self.outcomes.clear()


async def handle_connection(stream: trio.abc.Stream, options: LmtpdOptions, drop: MailDrop) -> None:
    session = drop.session()
    if options.metrics is not None:
        options.metrics.session_opened()
    try:
        await _Connection(stream, options, session).run()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the client went away; nothing was acknowledged that was not stored
    except Exception:
        # A bug must cost one connection (the MTA retries), not the server.
        log.exception("LMTP connection failed")
    finally:
        if options.metrics is not None:
            options.metrics.session_closed()
        await session.aclose()
        await trio.aclose_forcefully(stream)


async def serve(
    options: LmtpdOptions,
    drop: MailDrop,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[Sequence[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on host:port until cancelled; task_status gets the listeners (port 0 = any)."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    active = 0

    async def handler(stream: trio.SocketStream) -> None:
        nonlocal active
        if active >= options.max_connections:
            log.info("connection refused: %d connections already", active)
            with trio.move_on_after(1):
                try:
                    await stream.send_all(replies.too_many_connections().to_bytes())
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            await trio.aclose_forcefully(stream)
            return
        active += 1
        try:
            await handle_connection(stream, options, drop)
        finally:
            active -= 1

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        task_status.started(listeners)
