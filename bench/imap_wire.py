"""Reading IMAP server responses off a trio stream, with literals inlined.

Shared by the benchmark's clients and the server tests' raw client.
"""

from __future__ import annotations

import re
from typing import Final

import trio

_LITERAL: Final = re.compile(rb"\{(\d+)\}\r\n$")


class ResponseReader:
    """Buffers a stream and returns whole response lines."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError("server closed the connection")
        self.buf += data

    async def read_line(self) -> bytes:
        """One response line; a line announcing a literal includes the literal and the rest."""
        out = bytearray()
        while True:
            while (end := self.buf.find(b"\r\n")) < 0:
                await self._fill()
            line = bytes(self.buf[: end + 2])
            del self.buf[: end + 2]
            out += line
            m = _LITERAL.search(line)
            if not m:
                return bytes(out)
            size = int(m.group(1))
            while len(self.buf) < size:
                await self._fill()
            out += self.buf[:size]
            del self.buf[:size]
