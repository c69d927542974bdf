"""`Connection.read_now`: the server's look at the socket without waiting, after the ACK that
lets a Nagle client's held rest of a command out (imaplib's CRLF after a literal: issue 13)."""

from __future__ import annotations

import imaplib
import socket
import threading

import trio
import trio.testing

from imapd.server import Connection
from tests.imap_server_wire import running_server, trio_test


def _pair() -> tuple[trio.SocketStream, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    return trio.SocketStream(trio.socket.from_stdlib_socket(ours)), theirs


@trio_test
async def test_read_now_gives_what_is_there_none_when_nothing_and_empty_at_the_end() -> None:
    stream, client = _pair()
    conn = Connection(stream, "peer", tls=False)
    assert conn.read_now() is None  # nothing sent yet: no wait, no error
    client.sendall(b"a1 NOOP\r\n")
    assert conn.read_now() == b"a1 NOOP\r\n"
    assert conn.read_now() is None
    client.close()
    assert conn.read_now() == b""  # the client's end, as receive() gives it
    await stream.aclose()


@trio_test
async def test_read_now_is_none_on_a_stream_that_is_not_the_plain_socket() -> None:
    left, right = trio.testing.memory_stream_pair()
    conn = Connection(left, "peer", tls=False)
    await right.send_all(b"a1 NOOP\r\n")
    assert conn.read_now() is None  # (TLS, COMPRESS: their bytes are read by awaiting the stream)
    assert await conn.receive() == b"a1 NOOP\r\n"


@trio_test
async def test_imaplib_appends_with_the_crlf_after_the_literal_all_land() -> None:
    """imaplib sends the literal and its CRLF in two writes; the server reads the CRLF at once
    after acknowledging the literal, or waits for it: either way every APPEND is answered."""
    async with running_server() as (_, ports, _store):
        port = ports[0]
        answers: list[str] = []

        def client() -> None:
            imap = imaplib.IMAP4("127.0.0.1", port)
            imap.login("alice", "secret")
            before = imap.select("INBOX")[1][0]
            for n in range(20):
                answers.append(imap.append("INBOX", None, None, b"Subject: %d\r\n\r\nbody\r\n" % n)[0])
            after = imap.select("INBOX")[1][0]
            assert before is not None and after is not None
            answers.append(str(int(after) - int(before)))
            imap.logout()

        thread = threading.Thread(target=client)
        thread.start()
        with trio.fail_after(30):
            while thread.is_alive():
                await trio.sleep(0.01)
        assert answers == ["OK"] * 20 + ["20"]
