"""A trio stream that speaks COMPRESS=DEFLATE (RFC 4978) over another stream.

The server swaps its connection's stream for this one after the tagged OK
to COMPRESS DEFLATE has gone out uncompressed. Each `send_all` (one response
burst of the session) is deflated and sync-flushed, so the client can decode
it at once; `receive_some` hands the parser at most one decompressed chunk of
`protocol.deflate`'s bound at a time (a small deflate bomb never expands
further than that before the parser has had its say).
"""

from __future__ import annotations

from collections.abc import Iterator

import trio

from imapd.protocol.deflate import DeflateCodec


class DeflateStream(trio.abc.Stream):
    def __init__(self, inner: trio.abc.Stream, codec: DeflateCodec | None = None, pending: bytes = b"") -> None:
        self.inner = inner
        self._codec = codec or DeflateCodec()
        # Bytes the client sent right after the command are already compressed.
        self._chunks: Iterator[bytes] = self._codec.decompress(pending) if pending else iter(())
        self.sent_plain = 0  # octets before compression / after it (what COMPRESS saved)
        self.sent_wire = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        plain = bytes(data)
        wire = self._codec.compress(plain)
        self.sent_plain += len(plain)
        self.sent_wire += len(wire)
        await self.inner.send_all(wire)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """The next decompressed chunk (raises DeflateError on a corrupt stream); b"" at EOF."""
        while True:
            chunk = next(self._chunks, None)
            if chunk is not None:
                return chunk
            data = await self.inner.receive_some(max_bytes)
            if not data:
                return b""
            self._chunks = self._codec.decompress(bytes(data))

    async def aclose(self) -> None:
        await self.inner.aclose()
