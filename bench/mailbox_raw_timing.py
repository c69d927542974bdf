"""The server's part of a large response, timed without imaplib's parsing.

imaplib parses every untagged line of `UID FETCH 1:* (FLAGS)` in Python; at a
million lines its own CPU dominates what it measures. This client sends the
command on a plain socket and only counts bytes until the tagged reply, so
the time is the server's work plus the transfer (no literal parsing is needed:
a FLAGS response has none).
"""

from __future__ import annotations

import socket
import statistics
import time
from typing import Final

from bench.mailbox_measure import ImapTarget

MAX_REPLY: Final = 1 << 30  # a bound on what one timed reply may bring (a million FLAGS lines are ~40 MB)


def read_until(sock: socket.socket, buf: bytearray, tag: bytes) -> tuple[bytes, int]:
    """Read until a line starting with `tag`; returns that line and the bytes of the lines before it.
    `buf` always begins at the start of a line."""
    seen = 0
    while True:
        at = 0 if buf.startswith(tag) else buf.find(b"\r\n" + tag) + 2  # 1: not there
        if at != 1:
            end = buf.find(b"\r\n", at)
            if end >= 0:
                line = bytes(buf[at:end])
                seen += at
                del buf[: end + 2]
                return line, seen
        # Whole lines before the last line end are untagged (or the tagged one is not complete):
        # counted and dropped, so the buffer stays small.
        cut = buf.rfind(b"\r\n") + 2
        if cut >= 2:
            seen += cut
            del buf[:cut]
        if seen > MAX_REPLY:
            raise RuntimeError(f"more than {MAX_REPLY} bytes before the tagged reply")
        data = sock.recv(1 << 20)
        if not data:
            raise EOFError("server closed the connection")
        buf += data


def raw_command_ms(target: ImapTarget, command: str, runs: int) -> dict[str, float]:
    """Median ms (and reply bytes) of `command` on a selected mailbox, on `runs` fresh connections."""
    times: list[float] = []
    size = 0
    for _ in range(runs):
        with socket.create_connection((target.host, target.port), timeout=600) as sock:
            buf = bytearray()
            read_until(sock, buf, b"* OK")
            for tag, line in (
                (b"l", f'l LOGIN "{target.user}" "{target.password}"'),
                (b"s", f'''s SELECT "{target.mailbox}"'''),
            ):
                sock.sendall(line.encode() + b"\r\n")
                reply, _ = read_until(sock, buf, tag + b" ")
                if not reply.startswith(tag + b" OK"):
                    raise RuntimeError(f"{tag.decode()} failed: {reply[:200]!r}")
            start = time.perf_counter()
            sock.sendall(b"t " + command.encode() + b"\r\n")
            reply, size = read_until(sock, buf, b"t ")
            times.append((time.perf_counter() - start) * 1000)
            if not reply.startswith(b"t OK"):
                raise RuntimeError(f"{command} failed: {reply[:200]!r}")
            sock.sendall(b"z LOGOUT\r\n")
    return {"ms": round(statistics.median(times), 1), "reply_bytes": float(size)}
