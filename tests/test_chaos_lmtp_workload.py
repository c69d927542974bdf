"""LMTP deliveries of the workload: refused before DATA is a failure, a drop after DATA is unknown."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from chaos.history import EventType, HistoryWriter, Op, Operation, pair
from chaos.workload import ImapClient, WorkloadConfig


class _Lmtp(socketserver.StreamRequestHandler):
    server: FakeLmtp

    def handle(self) -> None:
        self.wfile.write(b"220 fake LMTP\r\n")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb == b"LHLO":
                self.wfile.write(b"250-fake\r\n250 PIPELINING\r\n")
            elif verb == b"RCPT" and self.server.refuse_rcpt:
                self.wfile.write(b"550 5.1.1 no such user\r\n")
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                self.wfile.write(b"250 ok\r\n")
            elif verb == b"DATA":
                self.wfile.write(b"354 go ahead\r\n")
                body = b""
                while (data := self.rfile.readline()) not in (b".\r\n", b""):
                    body += data
                self.server.bodies.append(body)
                self.server.delivered += 1
                if self.server.drop_after_data or self.server.drops_left > 0:
                    self.server.drops_left -= 1
                    return
                self.wfile.write(b"250 2.0.0 delivered\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return


class FakeLmtp(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Lmtp)
        self.refuse_rcpt = False
        self.drop_after_data = False
        self.drops_left = 0  # the next N deliveries lose their reply (stored, then the connection drops)
        self.delivered = 0
        self.bodies: list[bytes] = []


@pytest.fixture
def lmtp() -> Iterator[FakeLmtp]:
    server = FakeLmtp()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _deliver_op(port: int, **options: Any) -> Operation:
    history = HistoryWriter()
    cfg = WorkloadConfig(host="127.0.0.1", lmtp_port=port, imap=False, op_timeout=5.0, run_id="l", **options)
    ImapClient(cfg, history, 0, deadline=0.0).deliver()
    (op,) = pair(history.events())
    assert op.f is Op.DELIVER and op.invoke.str_("chaos_id") == "l-c0-1"
    return op


def _deliver(port: int) -> EventType:
    return _deliver_op(port).outcome


def test_mta_like_retry_resends_the_same_delivery_until_it_sees_a_reply(lmtp: FakeLmtp) -> None:
    """The kill-node-mta-retry scenario's client: one operation, the same bytes each time."""
    port = int(lmtp.server_address[1])
    lmtp.drops_left = 2
    op = _deliver_op(port, mta_retry=True)
    assert op.outcome is EventType.OK and op.event().int_("attempts") == 3
    assert lmtp.delivered == 3 and len(set(lmtp.bodies)) == 1  # what the store's dedupe recognises
    lmtp.refuse_rcpt = True  # 5xx: bounced at once, never retried
    assert _deliver_op(port, mta_retry=True).outcome is EventType.FAIL
    assert lmtp.delivered == 3
    lmtp.refuse_rcpt = False
    lmtp.drop_after_data = True  # the queue gives up: outcome unknown (it may have been stored)
    assert _deliver_op(port, mta_retry=True, mta_retry_for=0.3).outcome is EventType.UNKNOWN


def test_delivery_outcomes(lmtp: FakeLmtp) -> None:
    port = int(lmtp.server_address[1])
    assert _deliver(port) is EventType.OK
    lmtp.refuse_rcpt = True
    assert _deliver(port) is EventType.FAIL
    lmtp.refuse_rcpt = False
    lmtp.drop_after_data = True
    assert _deliver(port) is EventType.UNKNOWN
    assert lmtp.delivered == 2


def test_nobody_listening_is_a_failure_not_unknown() -> None:
    server = FakeLmtp()
    port = int(server.server_address[1])
    server.server_close()
    assert _deliver(port) is EventType.FAIL
