"""COMPRESS=DEFLATE (RFC 4978) as a sans-IO codec: raw deflate in both directions.

The server wraps its stream after answering "OK" to COMPRESS DEFLATE: every
outgoing write goes through `compress` (sync-flushed, so the client can
decode each response at once), every incoming read through `decompress`,
whose output comes in chunks of at most `max_chunk` bytes. Feed each chunk to
the parser and drain its events before asking for the next one: a small
"deflate bomb" then never expands into more memory than one chunk, and the
parser's own limits keep applying to the decompressed stream.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Final

from imapd.protocol.errors import ProtocolError

_RAW_DEFLATE: Final = -15  # RFC 4978 uses raw deflate (RFC 1951): no zlib header


class DeflateError(ProtocolError):
    """The client sent bytes that are not a valid deflate stream (answer with BYE)."""


class DeflateCodec:
    def __init__(self, *, level: int = 6, max_chunk: int = 64 * 1024) -> None:
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, _RAW_DEFLATE)
        self._decompressor = zlib.decompressobj(_RAW_DEFLATE)
        self._max_chunk = max_chunk

    def compress(self, data: bytes) -> bytes:
        return self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def decompress(self, data: bytes) -> Iterator[bytes]:
        """Inflate `data`, yielding pieces of at most `max_chunk` bytes (never the whole expansion)."""
        pending = data
        while True:
            try:
                out = self._decompressor.decompress(pending, self._max_chunk)
            except zlib.error as exc:
                raise DeflateError(f"invalid deflate data: {exc}") from None
            if out:
                yield out
            pending = self._decompressor.unconsumed_tail
            if not pending and len(out) < self._max_chunk:
                return
            if self._decompressor.eof:
                raise DeflateError("the client ended its deflate stream")
