"""NOTIFY (RFC 5465) delivery latency: `mailha bench notify [--dovecot]`.

Session a sets `NOTIFY SET (mailboxes (Work) (MessageNew MessageExpunge))` and IDLEs;
session b APPENDs to Work. Measured from the start of b's APPEND to the moment a's
`* STATUS` line arrives (a reader thread stamps a's lines), beside b's own APPEND
round trip. mailha runs as a throwaway store + imapd; with --dovecot the same on a
throwaway Dovecot in the same run.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time
from typing import Any, Final

from bench import dovecot
from bench.imap_spawn import SpawnedStack
from store.client import StoreClient

USER: Final = "notifybench"
PASSWORD: Final = "notify-bench-pw"


class _Line:
    """A blocking line reader on one IMAP connection (no literals: this conversation has none)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.read()  # greeting

    def read(self) -> bytes:
        line = self.file.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        return line

    def command(self, tag: bytes, text: bytes) -> bytes:
        self.sock.sendall(tag + b" " + text + b"\r\n")
        while True:
            line = self.read()
            if line.startswith(tag + b" "):
                return line

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def measure(port: int, appends: int) -> dict[str, float]:
    a, b = _Line(port), _Line(port)
    try:
        for c in (a, b):
            assert c.command(b"L", b"LOGIN %s %s" % (USER.encode(), PASSWORD.encode())).startswith(b"L OK")
        b.command(b"C", b"CREATE Work")
        ok = a.command(b"N", b"NOTIFY SET (mailboxes (Work) (MessageNew MessageExpunge))")
        assert ok.startswith(b"N OK"), ok
        a.sock.sendall(b"I IDLE\r\n")
        assert a.read().startswith(b"+")
        arrived: list[float] = []

        def reader() -> None:
            while True:
                line = a.read()
                if line.startswith(b"* STATUS"):
                    arrived.append(time.perf_counter())
                elif line.startswith(b"I "):
                    return

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        notify_ms: list[float] = []
        append_ms: list[float] = []
        for i in range(appends):
            start = time.perf_counter()
            assert b.command(b"A%d" % i, b"APPEND Work {2+}\r\nab").startswith(b"A%d OK" % i)
            append_ms.append((time.perf_counter() - start) * 1000)
            deadline = time.monotonic() + 5
            while len(arrived) <= i and time.monotonic() < deadline:
                time.sleep(0.0005)
            if len(arrived) <= i:
                raise RuntimeError("no STATUS notification within 5 s")
            notify_ms.append((arrived[i] - start) * 1000)
            time.sleep(0.05)  # one change at a time: Dovecot would merge a burst into one STATUS
        a.sock.sendall(b"DONE\r\n")
        thread.join(5)
        return {
            "notify_p50_ms": round(statistics.median(notify_ms), 2),
            "notify_max_ms": round(max(notify_ms), 2),
            "append_p50_ms": round(statistics.median(append_ms), 2),
        }
    finally:
        a.close()
        b.close()


def run(appends: int, *, with_dovecot: bool = False) -> dict[str, Any]:
    stack = SpawnedStack().start()
    try:
        with StoreClient(stack.store_address) as client:
            client.create_user(USER, PASSWORD)
        result: dict[str, Any] = dict(measure(stack.port, appends))
    finally:
        stack.stop()
    if with_dovecot:
        with dovecot.DovecotStack().start({USER: PASSWORD}) as reference:
            theirs = measure(reference.imap_port, appends)
        for key, value in theirs.items():
            result["dovecot_" + key] = value
        result["notify_vs_dovecot"] = round(result["notify_p50_ms"] / max(theirs["notify_p50_ms"], 0.01), 3)
    return result


def main(args: argparse.Namespace) -> int:
    result = run(max(1, args.appends), with_dovecot=args.dovecot)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:24} {value}")
    return 0
