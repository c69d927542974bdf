"""TLS on the IMAP server: STARTTLS, implicit TLS, the development
certificate, and no plaintext command injection across STARTTLS."""

from __future__ import annotations

import pathlib
import ssl

import trio

from imapd.session.context import ServerSettings
from imapd.tls import client_context, server_context
from nodeconf.selfsigned import ensure_dev_certificate
from tests.imap_server_wire import RawClient, connected, running_server, trio_test


def _contexts(tmp_path: pathlib.Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = ensure_dev_certificate(tmp_path / "tls")
    assert (tmp_path / "tls" / "imapd-dev.key").stat().st_mode & 0o077 == 0
    return server_context(cert, key), client_context(cert)


def test_dev_certificate_is_reused(tmp_path: pathlib.Path) -> None:
    first = ensure_dev_certificate(tmp_path)
    data = first[0].read_bytes()
    assert ensure_dev_certificate(tmp_path) == first
    assert first[0].read_bytes() == data


@trio_test
async def test_starttls_then_login(tmp_path: pathlib.Path) -> None:
    server_ctx, client_ctx = _contexts(tmp_path)
    settings = ServerSettings(allow_plaintext_login=False, tls_available=True)
    async with running_server(settings=settings, ssl_context=server_ctx) as (_, ports, _store):
        stream = await trio.open_tcp_stream("127.0.0.1", ports[0])
        client = RawClient(stream)
        greeting = await client.read_line()
        assert b"STARTTLS" in greeting and b"LOGINDISABLED" in greeting
        # A command pipelined after STARTTLS in plaintext must be thrown away, never run.
        await client.send(b"s1 STARTTLS\r\ns2 LOGIN alice secret\r\n")
        assert (await client.read_line()).startswith(b"s1 OK")
        tls = trio.SSLStream(stream, client_ctx, server_hostname="localhost")
        await tls.do_handshake()
        client = RawClient(tls)
        caps = b"".join(await client.command("CAPABILITY"))
        assert b"AUTH=PLAIN" in caps and b"LOGINDISABLED" not in caps and b"STARTTLS" not in caps
        reply = await client.command("AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==")
        assert reply[-1].startswith(b"t2 OK")
        assert (await client.command("SELECT INBOX"))[-1].startswith(b"t3 OK")
        await tls.aclose()


@trio_test
async def test_implicit_tls_port_and_sasl_continuation(tmp_path: pathlib.Path) -> None:
    server_ctx, client_ctx = _contexts(tmp_path)
    settings = ServerSettings(allow_plaintext_login=False, tls_available=True)
    async with running_server(settings=settings, ssl_context=server_ctx, tls_port=True) as (_, ports, _store):  # noqa: SIM117
        async with connected(ports[1], client_ctx) as c:
            tag = c.next_tag()
            await c.send(tag.encode() + b" AUTHENTICATE PLAIN\r\n")
            assert await c.read_line() == b"+ \r\n"
            await c.send(b"AGFsaWNlAHNlY3JldA==\r\n")
            lines = await c.until_tagged(tag)
            assert lines[-1].startswith(tag.encode() + b" OK")
            tag = c.next_tag()
            await c.send(tag.encode() + b" AUTHENTICATE PLAIN\r\n")
            assert (await c.until_tagged(tag))[-1].startswith(tag.encode() + b" BAD")  # already authenticated
