"""A FETCH from the index read in pieces reads the next piece while the last one's bytes wait
for the socket (issue 17, flags17): what a full socket holds is what the client parses meanwhile.

The session runs over a wire that takes at most `room` bytes whenever it is offered some and
logs every write and every wait; the store logs every piece it reads. No timing is asserted:
the order of reads, writes and waits, and the bytes the client gets.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator, Sequence

import trio

from imapd.protocol import events as ev
from imapd.protocol.parser import CommandParser
from imapd.session import index_queries
from imapd.session.context import ServerContext, ServerSettings
from imapd.session.dispatch import CONTEXT_REFRESH, HANDLERS
from imapd.session.session import Session
from imapd.store_client import AppendSpec, IndexColumns, IndexQuery
from imapd.store_fake import FakeStore
from imapd.watch_hub import WatchHub
from tests.imap_server_wire import trio_test


class NarrowWire:
    """A connection whose socket takes at most `room` bytes each time it is written to."""

    def __init__(self, log: list[str], room: int) -> None:
        self.log = log
        self.room = room
        self.received = bytearray()

    @property
    def peer(self) -> str:
        return "test"

    @property
    def tls_active(self) -> bool:
        return False

    def _take(self, parts: Sequence[bytes | memoryview]) -> int:
        data = b"".join(bytes(p) for p in parts)[: self.room]
        self.received += data
        return len(data)

    async def send(self, data: bytes) -> None:
        self.received += data

    async def send_parts(self, parts: list[bytes | memoryview]) -> None:
        self.log.append("wait")  # the socket is full: the session waits for the client
        await trio.lowlevel.checkpoint()
        self.received += b"".join(bytes(p) for p in parts)

    def send_now(self, parts: Sequence[bytes | memoryview]) -> int:
        taken = self._take(parts)
        if taken:
            self.log.append("write")
        return taken

    def request_close(self) -> None:
        pass


async def _run(session: Session, line: bytes) -> None:
    parser = CommandParser()
    parser.receive_data(line + b"\r\n")
    event = parser.next_event()
    assert isinstance(event, ev.CommandReceived), event
    await session.handle(event.tag, event.command)


def _pipelined(log: list[str]) -> list[str]:
    """The pieces read, after checking that each next piece was read right after the last one's
    first write: before waiting for the socket to take the rest (which comes after that read)."""
    reads = [entry for entry in log if entry.startswith("read")]
    for before, after in itertools.pairwise(reads):
        between = log[log.index(before) + 1 : log.index(after)]
        assert between[-1:] == ["write"], log
    assert log.count("wait") >= len(reads) - 1, log  # the socket was full each time (room < a piece)
    return reads


@trio_test
async def test_the_next_piece_is_read_before_waiting_for_the_socket_and_every_line_arrives_once() -> None:
    """Both paths: the plain one (no \\Recent in the session) and the line-by-line one (\\Recent)."""
    saved = index_queries.ONE_READ_UPTO, index_queries.FIRST_PIECE, index_queries.PIECE_GROWTH, index_queries.MAX_PIECE
    index_queries.ONE_READ_UPTO, index_queries.FIRST_PIECE, index_queries.PIECE_GROWTH = 4, 3, 2
    index_queries.MAX_PIECE = 6
    log: list[str] = []
    try:
        store = FakeStore()
        store.create_user("alice", "secret")
        await store.multi_append("alice", "INBOX", [(AppendSpec(flags=("\\Seen",)), b"Subject: m\r\n\r\nx\r\n")] * 20)
        scan = store.scan_index

        def logged(user: str, mailbox_id: int, query: IndexQuery) -> AsyncGenerator[IndexColumns, None]:
            log.append(f"read {query.uid_set}")
            return scan(user, mailbox_id, query)

        store.scan_index = logged  # type: ignore[method-assign]
        async with trio.open_nursery() as nursery:
            ctx = ServerContext(store, WatchHub(store, nursery), ServerSettings(allow_plaintext_login=True))
            for flags in (b"\\Seen \\Recent", b"\\Seen"):  # the first session claims \\Recent
                wire = NarrowWire(log, room=60)  # less than one piece's lines (each ~40 bytes)
                session = Session(ctx, wire, HANDLERS, CONTEXT_REFRESH)
                await _run(session, b"a LOGIN alice secret")
                await _run(session, b"b SELECT INBOX")
                log.clear()
                wire.received.clear()
                await _run(session, b"c UID FETCH 1:* (FLAGS)")
                assert _pipelined(log) == ["read 1:3", "read 4:9", "read 10:15", "read 16:20"]
                lines = bytes(wire.received).split(b"\r\n")
                assert lines[:-2] == [b"* %d FETCH (UID %d FLAGS (%s))" % (n, n, flags) for n in range(1, 21)]
                assert lines[-2].startswith(b"c OK")
            nursery.cancel_scope.cancel()
    finally:
        (
            index_queries.ONE_READ_UPTO,
            index_queries.FIRST_PIECE,
            index_queries.PIECE_GROWTH,
            index_queries.MAX_PIECE,
        ) = saved
