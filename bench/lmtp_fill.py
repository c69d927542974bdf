"""Filling one INBOX over LMTP with the deterministic corpus, with a client that is not the bottleneck.

One connection's delivery is a serial chain (client -> server -> fsyncs -> back),
so every microsecond the load generator spends per message lowers the rate
measured for the server. Two things keep it small:

- `WireCorpus`: the corpus (bench/mailbox_corpus.py, `message(n, seed)`) in wire
  form (`wire_form`: CRLF, dot-stuffed, final dot line), built once into a file
  by worker processes before anything is timed, then read back by offset
  (memory stays a few bytes per message; the bytes are the page cache's).
- `BlockingLmtpClient`: a plain blocking socket (no event loop pass per message)
  speaking exactly what `LmtpClient` speaks, Postfix's lmtp client on a cached
  connection: one message per transaction, MAIL FROM with SIZE when LHLO
  offers it, RCPT TO and DATA pipelined, the message, every reply awaited.

`fill_range` reports, besides the rate, the client's own CPU per delivery
(getrusage of this process over the timed part), so a reader can see how much
of each delivery's time the load generator itself took.
"""

from __future__ import annotations

import array
import contextlib
import mmap
import multiprocessing
import pathlib
import resource
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from bench.lmtp_bench import envelope, take_replies, wire_form
from bench.mailbox_corpus import message

BLOCK: Final = 1000  # messages per delivery-rate sample
CHUNK: Final = 2000  # messages a corpus worker formats at a time
WORKERS: Final = 2  # processes building the corpus (~0.3 ms of CPU a message)
SENDER: Final = "sender@bench.test"
REPLY_TIMEOUT: Final = 300.0  # seconds a blocking read may wait (a stuck server ends the run)


def _wire_chunk(args: tuple[int, int, int]) -> tuple[bytes, list[int], list[int]]:
    """Messages first..end-1 in wire form, their wire lengths and raw lengths (a worker's share)."""
    first, end, seed = args
    wires: list[bytes] = []
    raw: list[int] = []
    for n in range(first, end):
        data = message(n, seed)
        raw.append(len(data))
        wires.append(wire_form(data))
    return b"".join(wires), [len(w) for w in wires], raw


class WireCorpus:
    """Messages 0..count-1 of the corpus in wire form, in one file; `wire(n)` reads one back."""

    def __init__(self, path: pathlib.Path, offsets: array.array[int], raw_sizes: array.array[int], seed: int) -> None:
        self.path = path
        self.offsets = offsets  # len = count + 1
        self.raw_sizes = raw_sizes  # len(message(n, seed)) per n
        self.seed = seed
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        size = offsets[-1]
        self._map = mmap.mmap(self._file.fileno(), size, access=mmap.ACCESS_READ) if size else None

    @classmethod
    def build(cls, directory: pathlib.Path, count: int, seed: int, workers: int = WORKERS) -> WireCorpus:
        path = directory / f"corpus-{seed}-{count}.wire"
        offsets = array.array("Q", [0])
        raw_sizes = array.array("Q")
        chunks = [(first, min(count, first + CHUNK), seed) for first in range(0, count, CHUNK)]
        with open(path, "wb") as out:
            if chunks:
                with multiprocessing.get_context("forkserver").Pool(workers) as pool:
                    for wires, lengths, raw in pool.imap(_wire_chunk, chunks):
                        out.write(wires)
                        for length in lengths:
                            offsets.append(offsets[-1] + length)
                        raw_sizes.extend(raw)
        return cls(path, offsets, raw_sizes, seed)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def wire(self, n: int) -> bytes:
        assert self._map is not None
        return self._map[self.offsets[n] : self.offsets[n + 1]]

    def raw(self, n: int) -> bytes:
        """Message n as `message(n, seed)` gave it (the wire form undone)."""
        body = self.wire(n)[:-3]  # the final ".\r\n"
        body = body.replace(b"\r\n..", b"\r\n.")
        return body[1:] if body.startswith(b"..") else body

    def raw_bytes(self, first: int, end: int) -> int:
        return sum(self.raw_sizes[first:end])

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
        self._file.close()

    def __enter__(self) -> WireCorpus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def built_corpus(count: int, seed: int) -> Iterator[WireCorpus]:
    """A `WireCorpus` of `count` messages in a temporary directory, removed afterwards."""
    with (
        tempfile.TemporaryDirectory(prefix="mailha-corpus-") as tmp,
        WireCorpus.build(pathlib.Path(tmp), count, seed) as corpus,
    ):
        yield corpus


class BlockingLmtpClient:
    """`LmtpClient`'s protocol on a blocking socket: the same bytes, no event loop per message."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.size_announced = False

    @classmethod
    def connect(cls, host: str, port: int) -> BlockingLmtpClient:
        sock = socket.create_connection((host, port), timeout=REPLY_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as trio's streams do
        client = cls(sock)
        try:
            client.replies(1)
            sock.sendall(b"LHLO bench.test\r\n")
            lines = client.replies(1, keep_continuations=True)
        except BaseException:
            sock.close()
            raise
        client.size_announced = any(line[4:].upper().split(b" ")[0] == b"SIZE" for line in lines)
        return client

    def replies(self, count: int, *, keep_continuations: bool = False) -> list[bytes]:
        out: list[bytes] = []
        while True:
            got, self.buf = take_replies(self.buf, count, out, keep_continuations=keep_continuations)
            count -= got
            if count == 0:
                return out
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the LMTP server closed the connection")
            self.buf += data

    def deliver(self, rcpt: str, wire: bytes, sender: str = "bench@bench.test") -> None:
        self.sock.sendall(envelope(sender, rcpt, len(wire) if self.size_announced else None))
        mail, rcpt_reply, data = self.replies(3)
        if not (mail.startswith(b"250") and rcpt_reply.startswith(b"250") and data.startswith(b"354")):
            raise RuntimeError(f"refused: {mail!r} {rcpt_reply!r} {data!r}")
        self.sock.sendall(wire)
        (final,) = self.replies(1)
        if not final.startswith(b"250"):
            raise RuntimeError(f"delivery failed: {final!r}")

    def close(self) -> None:
        self.sock.close()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    rcpt: str


def fill_range(target: Endpoint, corpus: WireCorpus, first: int, end: int) -> dict[str, float]:
    """Deliver corpus messages first..end-1 on ONE LMTP connection; rates per block of BLOCK."""
    rates: list[float] = []
    client = BlockingLmtpClient.connect(target.host, target.port)
    cpu0 = _cpu_seconds()
    start = block_start = time.perf_counter()
    try:
        for n in range(first, end):
            client.deliver(target.rcpt, corpus.wire(n), SENDER)
            if (n + 1 - first) % BLOCK == 0:
                now = time.perf_counter()
                rates.append(BLOCK / (now - block_start))
                block_start = now
        total = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu0
    finally:
        client.close()
    count = end - first
    return {
        "delivered": count,
        "raw_bytes": corpus.raw_bytes(first, end),
        "fill_seconds": round(total, 1),
        "delivery_per_s": round(count / total, 1) if total else 0.0,
        "delivery_first_block_per_s": round(rates[0], 1) if rates else 0.0,
        "delivery_last_block_per_s": round(rates[-1], 1) if rates else 0.0,
        "client_cpu_ms_per_delivery": round(cpu * 1000 / max(1, count), 3),
    }


def fill_parallel(target: Endpoint, corpus: WireCorpus, count: int, connections: int) -> dict[str, float]:
    """Deliver messages 0..count-1 over `connections` LMTP connections, one thread each
    (connection i takes n % connections == i): a quicker fill; the UID order then differs
    from n's and only the overall rate is reported."""
    failed: list[BaseException] = []

    def deliver(i: int) -> None:
        try:
            client = BlockingLmtpClient.connect(target.host, target.port)
            try:
                for n in range(i, count, connections):
                    client.deliver(target.rcpt, corpus.wire(n), SENDER)
            finally:
                client.close()
        except BaseException as exc:  # reported below, in the caller's thread
            failed.append(exc)

    threads = [threading.Thread(target=deliver, args=(i,), name=f"lmtp-fill-{i}") for i in range(connections)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = time.perf_counter() - start
    if failed:
        raise RuntimeError(f"{len(failed)} of {connections} LMTP connections failed") from failed[0]
    return {
        "delivered": count,
        "raw_bytes": corpus.raw_bytes(0, count),
        "fill_seconds": round(total, 1),
        "fill_connections": connections,
        "delivery_per_s": round(count / total, 1) if total else 0.0,
    }
