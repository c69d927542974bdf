"""`mailha bench lmtp`: deliveries/s over LMTP and the time for one 20 MiB message.

Unless --host is given it starts its own store and lmtpd (the same command
lines standalone mode uses) on a temporary directory, creates the bench
user, measures, checks that the store holds exactly as many messages as
were acknowledged, and stops everything. The client is a small trio LMTP
client with one persistent connection per concurrent sender.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import pathlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import trio

from lmtpd.local_servers import LocalServers, local_servers
from mailha_api import store_pb2, store_pb2_grpc
from store.channel import open_channel

KIB = 1024
MIB = 1024 * KIB
_BENCH_MAX_MESSAGE = 64 * MIB  # room for the 20 MiB message plus trace headers
_MAX_DELIVERIES_PER_RUN = 200_000  # a bound besides the duration


@dataclass(frozen=True)
class BenchOptions:
    json: bool = False
    host: str | None = None
    port: int = 2424
    rcpt: str = "bench@bench.test"
    seconds: float = 5.0
    out: str = "bench-results/lmtp.json"


@dataclass(frozen=True)
class RunResult:
    size: int
    connections: int
    deliveries: int
    seconds: float
    latencies_ms: list[float]

    @property
    def per_second(self) -> float:
        return self.deliveries / self.seconds if self.seconds else 0.0


def make_message(size: int) -> bytes:
    """A message of about `size` bytes, already in LMTP wire form (with the dot line)."""
    head = b"From: bench@bench.test\r\nTo: bench@bench.test\r\nSubject: lmtp bench\r\n\r\n"
    line = b"x" * 74 + b"\r\n"
    # One line in 16 starts with a dot (dot-stuffed on the wire), to keep unstuffing in the path.
    block = line * 15 + b".." + line[1:]
    lines = max(1, (size - len(head)) // len(line))
    return head + block * (lines // 16) + line * (lines % 16) + b".\r\n"


def wire_form(data: bytes) -> bytes:
    """`data` as DATA carries it: CRLF line ends, dot-stuffed, with the final dot line."""
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..") + b".\r\n"


def envelope(sender: str, rcpt: str, size: int | None) -> bytes:
    """MAIL FROM (with SIZE= when LHLO offered it), RCPT TO and DATA, sent together (PIPELINING)."""
    size_param = f" SIZE={size}" if size is not None else ""
    return f"MAIL FROM:<{sender}>{size_param}\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode()


def take_replies(buf: bytes, count: int, out: list[bytes], *, keep_continuations: bool = False) -> tuple[int, bytes]:
    """Complete reply lines of `buf` into `out` until `count` replies have ended: each reply's last
    line (every line with `keep_continuations`). Returns (replies ended, the rest of `buf`)."""
    done = 0
    start = 0
    while done < count:
        nl = buf.find(b"\r\n", start)
        if nl < 0:
            break
        line = buf[start:nl]
        start = nl + 2
        if line[3:4] != b"-":
            done += 1
            out.append(line)
        elif keep_continuations:
            out.append(line)
    return done, buf[start:]


class LmtpClient:
    """What Postfix's lmtp client does on a cached connection: one message per transaction,
    MAIL FROM (with SIZE when offered), RCPT TO and DATA sent together (PIPELINING), then the message,
    then the next transaction once every reply is in. (Postfix sends RSET only to check a
    cached connection that sat idle, so a busy connection carries none.)"""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""
        self.size_announced = False  # SIZE= on MAIL FROM, as Postfix sends it when LHLO offers SIZE

    @classmethod
    async def connect(cls, host: str, port: int) -> LmtpClient:
        client = cls(await trio.open_tcp_stream(host, port))
        await client.replies(1)
        await client.stream.send_all(b"LHLO bench.test\r\n")
        lines = await client.replies(1, keep_continuations=True)
        client.size_announced = any(line[4:].upper().split(b" ")[0] == b"SIZE" for line in lines)
        return client

    async def replies(self, count: int, *, keep_continuations: bool = False) -> list[bytes]:
        """The next `count` replies' last lines (every line with `keep_continuations`)."""
        out: list[bytes] = []
        while True:
            got, self.buf = take_replies(self.buf, count, out, keep_continuations=keep_continuations)
            count -= got
            if count == 0:
                return out
            data = await self.stream.receive_some(65536)
            if not data:
                raise ConnectionError("lmtpd closed the connection")
            self.buf += data

    async def deliver(self, rcpt: str, wire: bytes, sender: str = "bench@bench.test") -> None:
        await self.stream.send_all(envelope(sender, rcpt, len(wire) if self.size_announced else None))
        mail, rcpt_reply, data = await self.replies(3)
        if not (mail.startswith(b"250") and rcpt_reply.startswith(b"250") and data.startswith(b"354")):
            raise RuntimeError(f"refused: {mail!r} {rcpt_reply!r} {data!r}")
        await self.stream.send_all(wire)
        (final,) = await self.replies(1)
        if not final.startswith(b"250"):
            raise RuntimeError(f"delivery failed: {final!r}")


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    rcpt: str


_serial = itertools.count()


def unique(wire: bytes) -> bytes:
    """`wire` with a header no other delivery of this process has: the store
    delivers exactly once per (sender, recipient, message digest), so identical
    bench messages would be acknowledged but stored once."""
    return b"X-Bench-Serial: %d\r\n" % next(_serial) + wire


async def _run(target: Target, size: int, connections: int, seconds: float) -> RunResult:
    wire = make_message(size)
    latencies: list[float] = []
    clients = [await LmtpClient.connect(target.host, target.port) for _ in range(connections)]
    rcpt = target.rcpt
    start = time.perf_counter()
    deadline = start + seconds

    async def sender(client: LmtpClient) -> None:
        while time.perf_counter() < deadline and len(latencies) < _MAX_DELIVERIES_PER_RUN:
            t0 = time.perf_counter()
            await client.deliver(rcpt, unique(wire))
            latencies.append((time.perf_counter() - t0) * 1000)

    async with trio.open_nursery() as nursery:
        for client in clients:
            nursery.start_soon(sender, client)
    elapsed = time.perf_counter() - start
    for client in clients:
        await client.stream.aclose()
    return RunResult(size, connections, len(latencies), elapsed, latencies)


async def _one(host: str, port: int, rcpt: str, size: int) -> float:
    wire = make_message(size)
    client = await LmtpClient.connect(host, port)
    t0 = time.perf_counter()
    await client.deliver(rcpt, unique(wire))
    elapsed = time.perf_counter() - t0
    await client.stream.aclose()
    return elapsed


@contextlib.contextmanager
def _own_servers(rcpt: str) -> Iterator[LocalServers]:
    with (
        tempfile.TemporaryDirectory(prefix="mailha-lmtp-bench-") as tmp,
        local_servers(pathlib.Path(tmp), max_message_size=_BENCH_MAX_MESSAGE) as servers,
    ):
        with open_channel(servers.store) as channel:
            stub = store_pb2_grpc.MailStoreStub(channel)
            user = rcpt.partition("@")[0]
            stub.CreateUser(store_pb2.CreateUserRequest(epoch=servers.epoch, name=user, password="bench-not-secret"))
            stub.AddAddress(store_pb2.AddAddressRequest(epoch=servers.epoch, address=rcpt, user=user))
        yield servers


def _stored_messages(store: str, user: str) -> int:
    with open_channel(store) as channel:
        stub = store_pb2_grpc.MailStoreStub(channel)
        return int(stub.Status(store_pb2.StatusRequest(user=user, name="INBOX"), timeout=10).status.messages)


def measure(host: str, port: int, rcpt: str, seconds: float) -> dict[str, float | int]:
    result: dict[str, float | int] = {}
    runs: list[RunResult] = []
    for size, label in ((4 * KIB, "4k"), (1 * MIB, "1m")):
        for connections in (1, 10):
            run = trio.run(_run, Target(host, port, rcpt), size, connections, seconds)
            runs.append(run)
            result[f"deliveries_{label}_c{connections}_per_s"] = round(run.per_second, 1)
            result[f"latency_{label}_c{connections}_p50_ms"] = round(statistics.median(run.latencies_ms), 2)
            result[f"deliveries_{label}_c{connections}"] = run.deliveries
    times = [trio.run(_one, host, port, rcpt, 20 * MIB) for _ in range(3)]
    result["deliver_20m_seconds"] = round(statistics.median(times), 3)
    result["deliver_20m_runs"] = len(times)
    result["delivered_total"] = sum(r.deliveries for r in runs) + len(times)
    result["seconds_per_run"] = seconds
    return result


def run_bench(options: BenchOptions) -> int:
    if options.host is not None:
        result = measure(options.host, options.port, options.rcpt, options.seconds)
    else:
        with _own_servers(options.rcpt) as cluster:
            result = measure("127.0.0.1", cluster.lmtp_port, options.rcpt, options.seconds)
            stored = _stored_messages(cluster.store, options.rcpt.partition("@")[0])
            result["stored_total"] = stored
            if stored != result["delivered_total"]:
                print(f"MISMATCH: {result['delivered_total']} acknowledged, {stored} stored")
                return 1
    out = pathlib.Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if options.json:
        print(json.dumps(result))
    else:
        print(f"{'size':>6} {'conns':>5} {'deliveries/s':>13} {'p50 ms':>8}")
        for label in ("4k", "1m"):
            for c in (1, 10):
                print(
                    f"{label:>6} {c:>5} {result[f'deliveries_{label}_c{c}_per_s']:>13} "
                    f"{result[f'latency_{label}_c{c}_p50_ms']:>8}"
                )
        print(f"one 20 MiB message: {result['deliver_20m_seconds']} s (median of {result['deliver_20m_runs']})")
        print(f"written to {out}")
    return 0
