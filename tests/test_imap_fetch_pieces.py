"""A message body handed over in pieces goes out whole and in order, however the socket
takes it (writev of the queued parts, partial writes resumed from views: issue 13)."""

from __future__ import annotations

import socket
from collections.abc import AsyncGenerator

import trio

from imapd.session.out_parts import coalesced, consume
from imapd.store_client import FetchedMessage, FetchRequest
from imapd.store_fake import FakeStore
from tests.imap_server_wire import running_server, trio_test

_PIECE = 256 * 1024


def test_consume_drops_whole_parts_and_keeps_a_view_of_a_partial_one() -> None:
    parts: list[bytes | memoryview] = [b"abc", b"defgh", b"ij"]
    consume(parts, 0)
    assert [bytes(p) for p in parts] == [b"abc", b"defgh", b"ij"]
    consume(parts, 5)
    assert [bytes(p) for p in parts] == [b"fgh", b"ij"] and isinstance(parts[0], memoryview)
    consume(parts, 3)
    assert [bytes(p) for p in parts] == [b"ij"]
    consume(parts, 2)
    assert parts == []


def test_coalesced_joins_small_parts_and_keeps_big_ones_apart() -> None:
    big = b"x" * (64 * 1024)
    out = coalesced([b"a", b"b", big, b"c", memoryview(b"d")])
    assert out[0] == b"ab" and out[1] is big and out[2] == b"cd" and len(out) == 3


class _PieceStore(FakeStore):
    """Hands bodies over in the store's read pieces, as the local reader does for a big message."""

    async def fetch(self, user: str, mailbox_id: int, request: FetchRequest) -> AsyncGenerator[FetchedMessage, None]:
        async for item in super().fetch(user, mailbox_id, request):
            whole = item.joined
            if whole is None:
                yield item
            else:
                pieces = tuple(whole[at : at + _PIECE] for at in range(0, len(whole), _PIECE)) or (b"",)
                yield FetchedMessage(item.meta, pieces)


def _message() -> bytes:
    head = b"From: a@example.org\r\nSubject: big\r\n\r\n"
    body = b"".join(b"line %07d of a body that is long enough to need partial writes\r\n" % i for i in range(40_000))
    return head + body


@trio_test
async def test_big_body_in_pieces_reaches_a_slow_reader_whole_and_in_order() -> None:
    message = _message()
    assert len(message) > 8 * _PIECE
    store = _PieceStore()
    store.create_user("alice", "secret")
    async with running_server(store=store) as (_, ports, _store):
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the server meets a full socket often
        await sock.connect(("127.0.0.1", ports[0]))
        stream = trio.SocketStream(sock)
        await stream.send_all(b'a LOGIN alice "secret"\r\nb SELECT INBOX\r\n')
        await stream.send_all(b"c APPEND INBOX {%d+}\r\n" % len(message) + message + b"\r\n")
        # Pipelined: the second FETCH and the NOOP queue behind the first one's literal.
        await stream.send_all(b"d FETCH 1 BODY.PEEK[]\r\ne FETCH 1 BODY.PEEK[]<300000.700000>\r\nf NOOP\r\n")
        received = bytearray()
        while not received.endswith(b"f OK NOOP completed\r\n"):
            data = await stream.receive_some(3000)
            assert data, bytes(received[-300:])
            received += data
            await trio.sleep(0)  # a reader slower than the writer
        await stream.aclose()
    first = b"* 1 FETCH (BODY[] {%d}\r\n" % len(message) + message + b")\r\nd OK FETCH completed\r\n"
    second = b"* 1 FETCH (BODY[]<300000> {700000}\r\n" + message[300000:1000000] + b")\r\ne OK FETCH completed\r\n"
    at = received.index(b"* 1 FETCH (BODY[] ")
    assert received[at : at + len(first)] == first
    assert received[at + len(first) : at + len(first) + len(second)] == second
