"""Issue 9.6: anyone could lock everyone out before login. Sockets from one
address filled the server (every client from anywhere got BYE), one byte every
2 s kept a connection alive past the pre-login timeout, and LMTP took any
number of connections. Now: a per-address pre-login limit, an absolute
pre-login deadline, a TLS-handshake deadline, and an LMTP connection cap."""

from __future__ import annotations

import dataclasses
import pathlib

import trio

from imapd.session.context import ServerSettings
from imapd.tls import server_context
from lmtpd.memory_drop import MemoryMailDrop
from lmtpd.server import serve as serve_lmtp
from nodeconf.selfsigned import ensure_dev_certificate
from tests.imap_server_wire import RawClient, running_server, trio_test
from tests.test_lmtp_server import OPTS

BASE = ServerSettings(allow_plaintext_login=True, tls_available=False)


async def _open_from(source: str, port: int) -> tuple[trio.SocketStream, RawClient]:
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    return stream, RawClient(stream)


async def _greeting(source: str, port: int) -> tuple[trio.SocketStream, RawClient, bytes]:
    stream, client = await _open_from(source, port)
    return stream, client, await client.read_line()


@trio_test
async def test_one_address_flooding_does_not_lock_out_another() -> None:
    settings = dataclasses.replace(BASE, max_connections=8, max_prelogin_per_address=5, prelogin_patience=0.3)
    async with running_server(settings=settings) as (_, ports, _store):
        held = []
        for _ in range(5):
            stream, client, greeting = await _greeting("127.0.0.2", ports[0])
            assert greeting.startswith(b"* OK")
            held.append((stream, client))
        # The flood goes on: more sockets from the same address.
        refused: list[bytes] = []

        async def one_more() -> None:
            stream, _client, greeting = await _greeting("127.0.0.2", ports[0])
            refused.append(greeting)
            await stream.aclose()

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(one_more)
            await trio.sleep(0.05)
            # Another address meanwhile: greeted at once.
            started = trio.current_time()
            other, _client, greeting = await _greeting("127.0.0.3", ports[0])
            assert greeting.startswith(b"* OK"), greeting
            assert trio.current_time() - started < 1.0
            await other.aclose()
        assert refused == [b"* BYE [UNAVAILABLE] Too many connections from your address\r\n"] * 20
        # Logged-in connections no longer count: the address may connect again.
        await held[0][1].login()
        stream, _client, greeting = await _greeting("127.0.0.2", ports[0])
        assert greeting.startswith(b"* OK")
        await stream.aclose()
        for stream, _client in held:
            await stream.aclose()


@trio_test
async def test_a_burst_of_clients_waits_for_slots_instead_of_failing() -> None:
    settings = dataclasses.replace(BASE, max_prelogin_per_address=3, prelogin_patience=5.0)
    async with running_server(settings=settings) as (_, ports, _store):
        logged_in = []

        async def client() -> None:
            stream, c, greeting = await _greeting("127.0.0.4", ports[0])
            assert greeting.startswith(b"* OK")
            await c.login()
            logged_in.append(c)
            await trio.sleep(0.5)  # stays connected, logged in
            await stream.aclose()

        async with trio.open_nursery() as nursery:
            for _ in range(12):
                nursery.start_soon(client)
        assert len(logged_in) == 12


@trio_test
async def test_trickling_bytes_do_not_extend_the_prelogin_deadline() -> None:
    settings = dataclasses.replace(BASE, preauth_timeout=1.0)
    async with running_server(settings=settings) as (_, ports, _store):
        stream, client, greeting = await _greeting("127.0.0.5", ports[0])
        assert greeting.startswith(b"* OK")
        started = trio.current_time()
        closed_after = None
        with trio.move_on_after(6):
            while True:
                await client.send(b"a")  # one byte of a command line that never ends
                with trio.move_on_after(0.2):
                    data = await stream.receive_some(4096)
                    if not data or b"BYE" in data:
                        closed_after = trio.current_time() - started
                        break
        assert closed_after is not None, "the trickling client was never disconnected"
        assert 0.8 <= closed_after < 3.0, closed_after
        await stream.aclose()


@trio_test
async def test_tls_handshake_has_a_deadline(tmp_path: pathlib.Path) -> None:
    cert, key = ensure_dev_certificate(tmp_path / "tls")
    settings = dataclasses.replace(BASE, tls_available=True, tls_handshake_timeout=0.5)
    async with running_server(settings=settings, ssl_context=server_context(cert, key), tls_port=True) as (
        _,
        ports,
        _store,
    ):
        stream, _client = await _open_from("127.0.0.6", ports[1])
        await stream.send_all(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
        started = trio.current_time()
        with trio.fail_after(5):
            while await stream.receive_some(4096):
                pass
        assert trio.current_time() - started < 3.0  # the default is 15 s, before it was a fixed 30 s
        await stream.aclose()


@trio_test
async def test_lmtp_connection_cap() -> None:
    drop = MemoryMailDrop(max_message_size=20_000)
    options = dataclasses.replace(OPTS, max_connections=3)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(serve_lmtp, options, drop, "127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        held = []
        for _ in range(3):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            assert (await stream.receive_some(4096)).startswith(b"220 ")
            held.append(stream)
        extra = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.fail_after(5):
            assert await extra.receive_some(4096) == b"421 4.3.2 Too many connections, try again later\r\n"
            assert await extra.receive_some(4096) == b""
        await extra.aclose()
        await held.pop().aclose()
        await trio.sleep(0.1)
        again = await trio.open_tcp_stream("127.0.0.1", port)
        assert (await again.receive_some(4096)).startswith(b"220 ")
        await again.aclose()
        for stream in held:
            await stream.aclose()
        nursery.cancel_scope.cancel()
