"""COMPRESS=DEFLATE codec: round trips, bounded inflation, garbage."""

from __future__ import annotations

import zlib

import pytest

from imapd.protocol import commands as c
from imapd.protocol import events as ev
from imapd.protocol.deflate import DeflateCodec, DeflateError
from imapd.protocol.parser import CommandParser


def client_pair() -> tuple[zlib._Compress, zlib._Decompress]:
    return zlib.compressobj(6, zlib.DEFLATED, -15), zlib.decompressobj(-15)


def test_round_trip_with_a_client() -> None:
    server = DeflateCodec()
    client_out, client_in = client_pair()
    wire = client_out.compress(b"a1 NOOP\r\na2 CAPABILITY\r\n") + client_out.flush(zlib.Z_SYNC_FLUSH)
    parser = CommandParser()
    for piece in server.decompress(wire):
        parser.receive_data(piece)
    assert parser.next_event() == ev.CommandReceived("a1", c.Noop())
    assert parser.next_event() == ev.CommandReceived("a2", c.Capability())
    # each response is decodable on its own (sync flush)
    assert client_in.decompress(server.compress(b"a1 OK NOOP done\r\n")) == b"a1 OK NOOP done\r\n"
    assert client_in.decompress(server.compress(b"* 3 EXISTS\r\n")) == b"* 3 EXISTS\r\n"


def test_inflation_comes_in_bounded_pieces() -> None:
    server = DeflateCodec(max_chunk=4096)
    client_out, _ = client_pair()
    bomb = client_out.compress(b"\x00" * 5_000_000) + client_out.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < 10_000
    total = 0
    for piece in server.decompress(bomb):
        assert len(piece) <= 4096
        total += len(piece)
    assert total == 5_000_000


def test_garbage_is_an_error() -> None:
    with pytest.raises(DeflateError):
        list(DeflateCodec().decompress(b"\xff\xff\xff\xff garbage"))
