"""COMPRESS=DEFLATE (RFC 4978) on the wire: offered after login only, the OK
in clear, then raw deflate both ways (client side written here with zlib,
independently of the server's codec), COMPRESSIONACTIVE, corrupt input,
after TLS, and what it saves on a FETCH-heavy session of text mail."""

from __future__ import annotations

import pathlib
import ssl
import zlib

import trio

from imapd.session.context import ServerSettings
from imapd.tls import client_context, server_context
from nodeconf.selfsigned import ensure_dev_certificate
from tests.imap_server_wire import RawClient, connected, running_server, trio_test

_ROOT = pathlib.Path(__file__).resolve().parent.parent


class ClientDeflate(trio.abc.Stream):
    """The client's end: raw deflate (window bits -15), a sync flush per write; counts wire bytes."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self._out = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._in = zlib.decompressobj(-15)
        self.received_wire = 0
        self.received_plain = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(self._out.compress(bytes(data)) + self._out.flush(zlib.Z_SYNC_FLUSH))

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while True:
            data = await self.inner.receive_some(max_bytes)
            if not data:
                return b""
            self.received_wire += len(data)
            plain = self._in.decompress(data)
            self.received_plain += len(plain)
            if plain:
                return plain

    async def aclose(self) -> None:
        await self.inner.aclose()


class Counting(trio.abc.Stream):
    """Counts what arrives on a plain stream (for the uncompressed baseline)."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.received = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await self.inner.receive_some(max_bytes)
        self.received += len(data)
        return bytes(data)

    async def aclose(self) -> None:
        await self.inner.aclose()


def text_mail(count: int) -> list[bytes]:
    """`count` text messages whose bodies are 3 KiB slices of this repository's own documentation."""
    text = b"\n".join(p.read_bytes() for p in sorted(_ROOT.glob("*/*.md")) + sorted(_ROOT.glob("*.md")))
    text = text.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    out = []
    for n in range(count):
        start = (n * 3079) % max(1, len(text) - 3072)
        body = text[start : start + 3072]
        head = f"From: Sender {n} <s{n}@example.org>\r\nTo: r@example.org\r\nSubject: note {n}\r\n\r\n"
        out.append(head.encode() + body + b"\r\n")
    return out


async def _append_all(client: RawClient, messages: list[bytes]) -> None:
    """One MULTIAPPEND with LITERAL+."""
    parts = [b"APPEND INBOX"]
    for m in messages:
        parts.append(b" {%d+}\r\n" % len(m) + m)
    lines = await client.command(b"".join(parts))
    assert b"OK" in lines[-1], lines[-1]


async def fetch_bytes(port: int, compress: bool, count: int = 200) -> tuple[int, int]:
    """(octets the client received, octets they decompress to) for SELECT + FETCH 1:count BODY.PEEK[]."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    counting = Counting(stream)
    client = RawClient(counting)
    await client.read_line()
    await client.login()
    wrapper: ClientDeflate | None = None
    if compress:
        assert (await client.command("COMPRESS DEFLATE"))[-1].startswith(b"t2 OK")
        wrapper = ClientDeflate(counting)
        client.stream = wrapper
    before = counting.received
    assert b"OK" in (await client.command("SELECT INBOX"))[-1]
    lines = await client.command(f"FETCH 1:{count} BODY.PEEK[]")
    assert b"OK" in lines[-1] and len(lines) == count + 1, lines[-1]
    wire = counting.received - before
    plain = wire if wrapper is None else wrapper.received_plain
    await stream.aclose()
    return wire, plain


@trio_test
async def test_compress_offered_after_login_and_deflates_both_ways() -> None:
    async with running_server() as (server, ports, _store), connected(ports[0]) as c:
        assert b"COMPRESS=DEFLATE" not in b"".join(await c.command("CAPABILITY"))
        assert (await c.command("COMPRESS DEFLATE"))[-1].startswith(b"t2 BAD")  # not before login (RFC 4978 3)
        await c.login()
        assert b" COMPRESS=DEFLATE" in b"".join(await c.command("CAPABILITY"))
        assert (await c.command("COMPRESS GZIP"))[-1].startswith(b"t5 BAD")
        # RFC 4978 section 3 example: "a compress deflate" / "a OK DEFLATE active", in clear.
        assert await c.command("compress deflate") == [b"t6 OK DEFLATE active\r\n"]
        wrapper = ClientDeflate(c.stream)
        c.stream = wrapper
        lines = await c.command("SELECT INBOX")
        assert lines[-1].startswith(b"t7 OK [READ-WRITE]") and wrapper.received_wire > 0
        await _append_all(c, text_mail(3))
        fetched = await c.command("FETCH 1:3 (BODY[] FLAGS)")
        assert fetched[-1].startswith(b"t9 OK") and len(fetched) == 4
        assert (await c.command("COMPRESS DEFLATE"))[-1] == b"t10 NO [COMPRESSIONACTIVE] DEFLATE is already active\r\n"
        assert (await c.command("NOOP"))[-1].startswith(b"t11 OK")
        (conn,) = server.connections
        assert conn.stream.sent_wire < conn.stream.sent_plain  # type: ignore[attr-defined]


@trio_test
async def test_compressed_bytes_that_are_not_deflate_end_the_connection_politely() -> None:
    async with running_server() as (server, ports, _store), connected(ports[0]) as c:
        await c.login()
        assert (await c.command("COMPRESS DEFLATE"))[-1].startswith(b"t2 OK")
        await c.send(b"\xff\xfe not a deflate stream \x00" * 4)
        inflate = zlib.decompressobj(-15)
        reply = b""
        with trio.fail_after(10):
            while data := await c.stream.receive_some(4096):
                reply += inflate.decompress(data)
        assert reply == b"* BYE Invalid compressed data\r\n"
        assert not server.connections
        async with connected(ports[0]) as again:  # the server lives on
            await again.login()


@trio_test
async def test_a_deflate_bomb_meets_the_line_limit() -> None:
    settings = ServerSettings(allow_plaintext_login=True, tls_available=False)
    async with running_server(settings=settings) as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        assert (await c.command("COMPRESS DEFLATE"))[-1].startswith(b"t2 OK")
        wrapper = ClientDeflate(c.stream)
        c.stream = wrapper
        # 4 MiB of one line compresses to ~4 KiB; the server must refuse it as too long, not buffer it.
        await wrapper.send_all(b"t3 NOOP " + b"a" * (4 * 1024 * 1024) + b"\r\n")
        line = await c.read_line()
        assert b"BAD" in line and b"TOOBIG" in line, line
        assert (await c.command("NOOP"))[-1].startswith(b"t3 OK")  # the session lives on


@trio_test
async def test_compress_after_starttls(tmp_path: pathlib.Path) -> None:
    cert, key = ensure_dev_certificate(tmp_path / "tls")
    settings = ServerSettings(allow_plaintext_login=False, tls_available=True)
    async with running_server(settings=settings, ssl_context=server_context(cert, key), tls_port=True) as (
        _,
        ports,
        _store,
    ):
        client_ctx: ssl.SSLContext = client_context(cert)
        async with connected(ports[1], client_ctx) as c:
            await c.login()
            assert (await c.command("COMPRESS DEFLATE"))[-1].startswith(b"t2 OK")
            c.stream = ClientDeflate(c.stream)
            assert b" COMPRESS=DEFLATE" in b"".join(await c.command("CAPABILITY"))
            assert (await c.command("SELECT INBOX"))[-1].startswith(b"t4 OK")


@trio_test
async def test_compress_saves_most_of_a_fetch_heavy_session_of_text_mail() -> None:
    async with running_server() as (_, ports, _store):
        async with connected(ports[0]) as c:
            await c.login()
            await _append_all(c, text_mail(200))
        plain_wire, _ = await fetch_bytes(ports[0], compress=False)
        wire, plain = await fetch_bytes(ports[0], compress=True)
        assert abs(plain - plain_wire) < 100  # the same responses (SELECT's RECENT count aside)
        assert wire < plain_wire * 0.6, (wire, plain_wire)


@trio_test
async def test_idle_pushes_arrive_compressed() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c, connected(ports[0]) as other:
        await c.login()
        assert (await c.command("COMPRESS DEFLATE"))[-1].startswith(b"t2 OK")
        c.stream = ClientDeflate(c.stream)
        assert b"OK" in (await c.command("SELECT INBOX"))[-1]
        await c.send(b"t4 IDLE\r\n")
        assert (await c.read_line()).startswith(b"+ ")
        await other.login()
        await _append_all(other, text_mail(1))
        with trio.fail_after(10):
            assert await c.read_line() == b"* 1 EXISTS\r\n"  # sent by the IDLE pump, not the command path
        await c.send(b"DONE\r\n")
        assert (await c.until_tagged("t4"))[-1].startswith(b"t4 OK")
