"""A blocking raw IMAP client for scripted conversations: bytes in, response lines out.

No LITERAL+ assumption: a synchronising literal `{n}` in a command is sent only
after the server's continuation request. Response lines come back with their
literals inlined (as `bench.imap_wire` does for trio streams).
"""

from __future__ import annotations

import re
import socket
from typing import Final

_LITERAL: Final = re.compile(rb"\{(\d+)\}\r\n$")
_SYNC_LITERAL: Final = re.compile(rb"\{(\d+)\}\r\n")
CLOSED: Final = b"<connection closed>"


class WireClient:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = bytearray()
        self.greeting = self.read_line()

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("server closed the connection")
        self.buf += data

    def read_line(self) -> bytes:
        """One response line; a line announcing a literal includes the literal and the rest."""
        out = bytearray()
        while True:
            while (end := self.buf.find(b"\r\n")) < 0:
                self._fill()
            line = bytes(self.buf[: end + 2])
            del self.buf[: end + 2]
            out += line
            m = _LITERAL.search(line)
            if not m:
                return bytes(out)
            size = int(m.group(1))
            while len(self.buf) < size:
                self._fill()
            out += self.buf[:size]
            del self.buf[:size]

    def send(self, data: bytes) -> list[bytes]:
        """Send command bytes, waiting for `+` before each synchronising literal.

        Returns the lines read while waiting (untagged data or a refusal)."""
        seen: list[bytes] = []
        pos = 0
        for m in _SYNC_LITERAL.finditer(data):
            self.sock.sendall(data[pos : m.end()])
            pos = m.end()
            while True:
                try:
                    line = self.read_line()
                except EOFError:
                    return [*seen, CLOSED]
                seen.append(line)
                if line.startswith(b"+"):
                    break
                if not line.startswith(b"*"):
                    return seen  # tagged refusal: the rest is not sent
        self.sock.sendall(data[pos:])
        return [line for line in seen if not line.startswith(b"+")]

    def command(self, tag: bytes, data: bytes) -> list[bytes]:
        """`tag data\\r\\n`, then every line up to and including the tagged one."""
        lines = self.send(tag + b" " + data + b"\r\n")
        if lines and (lines[-1].startswith(tag + b" ") or lines[-1] == CLOSED):
            return lines
        return lines + self.until(tag)

    def until(self, tag: bytes) -> list[bytes]:
        """Lines up to the tagged one; if the server closes first, what came and `CLOSED`."""
        lines = []
        while True:
            try:
                line = self.read_line()
            except EOFError:
                lines.append(CLOSED)
                return lines
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines
