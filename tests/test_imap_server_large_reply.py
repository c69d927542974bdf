"""`Connection.send_parts` and TCP_NOTSENT_LOWAT: trio's 16 KiB low mark made a large reply go
out 56 KB at a time, one wait for the socket (one wake-up of imapd's trio thread) each; once a
reply has had to wait, the rest may queue in the kernel, and the mark is trio's again when the
connection next waits for the client (issue 17, flags17b)."""

from __future__ import annotations

import socket

import trio

from imapd.server import LARGE_REPLY_LOWAT, NOTSENT_LOWAT, Connection
from imapd.session.out_parts import Part
from tests.imap_server_wire import trio_test

_REPLY = 32 * 1024 * 1024  # more than the kernel holds for a client that does not read yet


def _lowat(stream: trio.SocketStream) -> int:
    return int(stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT))


async def _tcp_pair() -> tuple[trio.SocketStream, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        client = socket.create_connection(listener.getsockname(), timeout=30)
        ours, _ = listener.accept()
    ours.setblocking(False)
    return trio.SocketStream(trio.socket.from_stdlib_socket(ours)), client


def _read_all(client: socket.socket, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        chunk = client.recv(1 << 20)
        assert chunk
        got += chunk
    return bytes(got)


@trio_test
async def test_a_reply_that_waits_raises_the_low_mark_until_the_next_read() -> None:
    stream, client = await _tcp_pair()
    conn = Connection(stream, "peer", tls=False)
    assert _lowat(stream) == NOTSENT_LOWAT  # trio's
    body = bytes(range(256)) * (_REPLY // 256)
    with client:
        async with trio.open_nursery() as nursery:
            parts: list[Part] = [b"* first\r\n", body]
            nursery.start_soon(conn.send_parts, parts)
            await trio.sleep(0.05)  # the send is waiting: the client reads nothing yet
            assert _lowat(stream) == LARGE_REPLY_LOWAT
            got = await trio.to_thread.run_sync(_read_all, client, len(body) + 9)
        assert got == b"* first\r\n" + body  # every byte, in order
        assert _lowat(stream) == LARGE_REPLY_LOWAT  # until the connection waits for the client
        client.sendall(b"a1 NOOP\r\n")
        assert await conn.receive() == b"a1 NOOP\r\n"
        assert _lowat(stream) == NOTSENT_LOWAT
    await stream.aclose()


@trio_test
async def test_a_reply_the_socket_takes_at_once_leaves_the_low_mark_alone() -> None:
    stream, client = await _tcp_pair()
    conn = Connection(stream, "peer", tls=False)
    reply = [b"* 1 FETCH (UID 1 FLAGS ())\r\n", b"a1 OK FETCH completed\r\n"]
    with client:
        await conn.send_parts(list[Part](reply))
        assert _lowat(stream) == NOTSENT_LOWAT
        assert _read_all(client, 51) == b"".join(reply)
    await stream.aclose()
