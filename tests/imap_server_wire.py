"""Test helpers for the IMAP server: an in-process server on the fake store
and a raw line-level client that reads literals correctly."""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio

from bench.imap_wire import ResponseReader
from imapd.server import Endpoint, ImapServer, serve
from imapd.session.context import ServerSettings
from imapd.store_client import StoreClient
from imapd.store_fake import FakeStore


class RawClient(ResponseReader):
    """Speaks IMAP bytes; returns response lines (literal bytes inlined)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        super().__init__(stream)
        self._tag = 0

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    def next_tag(self) -> str:
        self._tag += 1
        return f"t{self._tag}"

    async def command(self, text: str | bytes) -> list[bytes]:
        """Send one command; return every line up to and including the tagged one."""
        tag = self.next_tag()
        raw = text.encode() if isinstance(text, str) else text
        await self.send(tag.encode() + b" " + raw + b"\r\n")
        return await self.until_tagged(tag)

    async def until_tagged(self, tag: str) -> list[bytes]:
        lines = []
        while True:
            line = await self.read_line()
            lines.append(line)
            if line.startswith(tag.encode() + b" "):
                return lines

    async def login(self, user: str = "alice", password: str = "secret") -> None:
        lines = await self.command(f'LOGIN {user} "{password}"')
        assert b"OK" in lines[-1], lines


@asynccontextmanager
async def running_server(
    store: StoreClient | None = None,
    settings: ServerSettings | None = None,
    ssl_context: ssl.SSLContext | None = None,
    tls_port: bool = False,
) -> AsyncIterator[tuple[ImapServer, list[int], StoreClient]]:
    if store is None:
        fake = FakeStore()
        fake.create_user("alice", "secret")
        fake.create_user("bob", "hunter2")
        store = fake
    settings = settings or ServerSettings(allow_plaintext_login=True, tls_available=ssl_context is not None)
    endpoints = [Endpoint("127.0.0.1", 0, False)]
    if tls_port:
        endpoints.append(Endpoint("127.0.0.1", 0, True))
    async with trio.open_nursery() as nursery:
        server, ports = await nursery.start(
            partial(serve, handle_signals=False), store, settings, ssl_context, endpoints
        )
        yield server, ports, store
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def connected(port: int, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[RawClient]:
    stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
    if ssl_context is not None:
        tls = trio.SSLStream(stream, ssl_context, server_hostname="localhost")
        await tls.do_handshake()
        stream = tls
    client = RawClient(stream)
    greeting = await client.read_line()
    assert greeting.startswith(b"* OK") or greeting.startswith(b"* BYE"), greeting
    try:
        yield client
    finally:
        await stream.aclose()


def trio_test(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test under trio with a deadline (no pytest-trio here)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        async def main() -> None:
            with trio.fail_after(60):
                await fn(*args, **kwargs)

        trio.run(main)

    return wrapper
