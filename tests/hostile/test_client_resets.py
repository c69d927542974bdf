"""Issue 9.5: every client that reset its TCP connection or closed TLS without
close_notify cost a ~2.6 KB ERROR traceback (the BrokenResourceError arrived in
an ExceptionGroup). A client going away is now one INFO line."""

from __future__ import annotations

import logging
import pathlib
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from imapd.session.context import ServerSettings
from imapd.tls import client_context, server_context
from nodeconf.selfsigned import ensure_dev_certificate
from tests.imap_server_wire import RawClient, running_server, trio_test

RESETS = 50


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def captured() -> Iterator[_Records]:
    handler = _Records()
    logger = logging.getLogger("imapd")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


async def _reset_after_command(port: int) -> None:
    sock = trio.socket.socket()
    await sock.connect(("127.0.0.1", port))
    client = RawClient(trio.SocketStream(sock))
    assert (await client.read_line()).startswith(b"* OK")
    await client.send(b"a1 LOGIN alice secret\r\n")
    assert (await client.read_line()).startswith(b"a1 OK")
    # SO_LINGER 0: close() sends RST instead of FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def _tls_without_close_notify(port: int, ctx: object) -> None:
    assert isinstance(ctx, __import__("ssl").SSLContext)
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    tls = trio.SSLStream(tcp, ctx, server_hostname="localhost")
    await tls.do_handshake()
    client = RawClient(tls)
    assert (await client.read_line()).startswith(b"* OK")
    await tcp.aclose()  # the TCP connection goes, the TLS session is never closed


def _assert_quiet(records: list[logging.LogRecord], expected_info: int) -> None:
    loud = [r for r in records if r.levelno >= logging.WARNING or r.exc_info]
    assert loud == [], [r.getMessage() for r in loud[:3]]
    gone = [r for r in records if "ended by the client" in r.getMessage()]
    assert len(gone) == expected_info, [r.getMessage() for r in records[-5:]]
    assert all(r.levelno == logging.INFO for r in gone)


@trio_test
async def test_fifty_resets_log_no_traceback() -> None:
    with captured() as log:
        async with running_server() as (server, ports, _store):
            for _ in range(RESETS):
                await _reset_after_command(ports[0])
            with trio.fail_after(10):
                while server.connections:
                    await trio.sleep(0.02)
            await trio.sleep(0.1)
    _assert_quiet(log.records, RESETS)


@trio_test
async def test_fifty_tls_closes_without_close_notify_log_no_traceback(tmp_path: pathlib.Path) -> None:
    cert, key = ensure_dev_certificate(tmp_path / "tls")
    settings = ServerSettings(allow_plaintext_login=False, tls_available=True)
    with captured() as log:
        async with running_server(settings=settings, ssl_context=server_context(cert, key), tls_port=True) as (
            server,
            ports,
            _store,
        ):
            for _ in range(RESETS):
                await _tls_without_close_notify(ports[1], client_context(cert))
            with trio.fail_after(10):
                while server.connections:
                    await trio.sleep(0.02)
            await trio.sleep(0.1)
    _assert_quiet(log.records, RESETS)
