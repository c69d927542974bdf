"""`mailha bench imap`: realistic IMAP sessions against a running server.

N clients each loop: LOGIN, LIST, SELECT INBOX, FETCH flags+envelopes of the
newest 50, FETCH one body, STORE a flag, APPEND 4 KiB, EXPUNGE, LOGOUT;
plus K connections holding IDLE. Bounded by --seconds. Users are created
(and their INBOX seeded) through the store API when --store is given.
--spawn starts a throwaway store + imapd itself (bench/imap_spawn.py) and
reports their CPU per session; --procs splits the clients over several
client processes so the client's own CPU is not one Python thread's worth.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import pathlib
import re
import resource
import ssl
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Final

import grpc
import trio

from bench.imap_spawn import SpawnedStack
from bench.imap_wire import ResponseReader
from bench.sort_bench import measure
from mailha_api import store_pb2, store_pb2_grpc

_EXISTS: Final = re.compile(rb"^\* (\d+) EXISTS", re.MULTILINE)
_SEED_MESSAGES: Final = 60
_SESSION_COMMANDS: Final = 9  # LOGIN LIST SELECT FETCH FETCH STORE APPEND EXPUNGE LOGOUT
_KEEP: Final = 60  # the loop deletes the oldest message beyond this many


def make_message(i: int, size: int = 4096) -> bytes:
    head = (
        f"From: Bench Sender <sender{i}@bench.test>\r\nTo: user@bench.test\r\n"
        f"Subject: bench message {i}\r\nDate: Sat, 28 Nov 2026 12:00:00 +0000\r\n"
        f"Message-ID: <{i}.{time.time_ns()}@bench.test>\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog 0123456789.\r\n"
    body = (line * (size // len(line) + 1))[: max(0, size - len(head))]
    return head + body


@dataclass(frozen=True)
class ImapBenchOptions:
    host: str = "127.0.0.1"
    port: int = 1143
    tls: bool = False
    starttls: bool = False
    cafile: pathlib.Path | None = None
    clients: int = 50
    seconds: float = 10.0
    users: int = 20
    idle: int = 0
    store: str | None = None
    epoch: int | None = None
    user_prefix: str = "bench"
    password: str = "bench-password"
    json_output: bool = False
    # Only APPEND 4 KiB messages on one logged-in connection per client.
    append_only: bool = False
    # Pause between the commands of a session: 0 = back to back (saturation).
    think_ms: float = 0.0
    output: pathlib.Path | None = pathlib.Path("bench-results/imap.json")
    # Start a throwaway store + imapd (with this many worker processes) instead of using host/port.
    spawn: bool = False
    spawn_workers: int = 1
    # With spawn: afterwards fill a mailbox of this many messages and add sort_10k_ms etc. (bench/sort_bench.py).
    sort_messages: int = 0
    # Client processes the clients (and IDLE holders) are split over.
    procs: int = 1
    # Clients like imaplib: APPEND with a synchronizing literal (no LITERAL+), the literal
    # and its final CRLF in two writes; and STATUS INBOX before SELECT.
    imaplib_like: bool = False


@dataclass
class _Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    sessions: int = 0
    errors: int = 0
    appends: int = 0
    failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class _Client(ResponseReader):
    def __init__(self, stream: trio.abc.Stream, think: float = 0.0) -> None:
        super().__init__(stream)
        self.n = 0
        self.think = think  # pause before each command, like a user (not timed)

    async def command(self, text: bytes, stats: _Stats, name: str) -> bytes:
        if self.think and self.n:
            await trio.sleep(self.think)
        self.n += 1
        tag = b"b%d" % self.n
        start = time.perf_counter()
        await self.stream.send_all(tag + b" " + text + b"\r\n")
        lines: list[bytes] = []
        while True:
            line = await self.read_line()
            if line.startswith(tag + b" "):
                stats.latencies[name].append(time.perf_counter() - start)
                if not line.startswith(tag + b" OK"):
                    stats.failures[name] += 1
                return b"".join(lines) + line
            lines.append(line)

    async def append_synchronizing(self, mailbox: bytes, msg: bytes, stats: _Stats, name: str) -> None:
        """APPEND as imaplib sends it: wait for "+", then the literal, then CRLF in a second write."""
        if self.think and self.n:
            await trio.sleep(self.think)
        self.n += 1
        tag = b"b%d" % self.n
        start = time.perf_counter()
        await self.stream.send_all(tag + b" APPEND " + mailbox + b" {%d}\r\n" % len(msg))
        while True:
            line = await self.read_line()
            if line.startswith(b"+"):
                break
            if line.startswith(tag + b" "):
                stats.failures[name] += 1
                return
        await self.stream.send_all(msg)
        await self.stream.send_all(b"\r\n")
        while True:
            line = await self.read_line()
            if line.startswith(tag + b" "):
                stats.latencies[name].append(time.perf_counter() - start)
                if not line.startswith(tag + b" OK"):
                    stats.failures[name] += 1
                return


async def _connect(opts: ImapBenchOptions, ssl_ctx: ssl.SSLContext | None) -> _Client:
    stream: trio.abc.Stream = await trio.open_tcp_stream(opts.host, opts.port)
    if opts.tls and ssl_ctx is not None:
        tls = trio.SSLStream(stream, ssl_ctx, server_hostname="localhost")
        await tls.do_handshake()
        stream = tls
    client = _Client(stream, opts.think_ms / 1000)
    await client.read_line()  # greeting
    if opts.starttls and ssl_ctx is not None:
        await client.command(b"STARTTLS", _Stats(), "STARTTLS")
        tls = trio.SSLStream(stream, ssl_ctx, server_hostname="localhost")
        await tls.do_handshake()
        client.stream = tls
    return client


async def _session(opts: ImapBenchOptions, ssl_ctx: ssl.SSLContext | None, user: str, stats: _Stats, i: int) -> None:
    client = await _connect(opts, ssl_ctx)
    try:
        await client.command(f'LOGIN {user} "{opts.password}"'.encode(), stats, "LOGIN")
        await client.command(b'LIST "" "*"', stats, "LIST")
        if opts.imaplib_like:
            await client.command(b"STATUS INBOX (MESSAGES UIDNEXT UNSEEN)", stats, "STATUS")
        reply = await client.command(b"SELECT INBOX", stats, "SELECT")
        m = _EXISTS.search(reply)
        exists = int(m.group(1)) if m else 0
        if exists:
            low = max(1, exists - 49)
            await client.command(b"FETCH %d:%d (FLAGS ENVELOPE)" % (low, exists), stats, "FETCH_ENVELOPES")
            await client.command(b"FETCH %d BODY.PEEK[]" % exists, stats, "FETCH_BODY")
            if exists > _KEEP:
                await client.command(b"STORE 1 +FLAGS.SILENT (\\Deleted)", stats, "STORE")
            else:
                await client.command(b"STORE %d +FLAGS (\\Seen)" % exists, stats, "STORE")
        msg = make_message(i)
        if opts.imaplib_like:
            await client.append_synchronizing(b"INBOX", msg, stats, "APPEND")
        else:
            await client.command(b"APPEND INBOX {%d+}\r\n" % len(msg) + msg, stats, "APPEND")
        stats.appends += 1
        await client.command(b"EXPUNGE", stats, "EXPUNGE")
        await client.command(b"LOGOUT", stats, "LOGOUT")
        stats.sessions += 1
    finally:
        await client.stream.aclose()


async def _appender(
    opts: ImapBenchOptions, ssl_ctx: ssl.SSLContext | None, index: int, stats: _Stats, end: float
) -> None:
    client = await _connect(opts, ssl_ctx)
    try:
        user = f"{opts.user_prefix}{index % opts.users}"
        await client.command(f'LOGIN {user} "{opts.password}"'.encode(), stats, "LOGIN")
        i = 0
        while time.monotonic() < end:
            i += 1
            msg = make_message(index * 1_000_000 + i)
            await client.command(b"APPEND Archive {%d+}\r\n" % len(msg) + msg, stats, "APPEND")
            stats.appends += 1
        await client.command(b"LOGOUT", stats, "LOGOUT")
        stats.sessions += 1
    finally:
        await client.stream.aclose()


async def _loop(opts: ImapBenchOptions, ssl_ctx: ssl.SSLContext | None, index: int, stats: _Stats, end: float) -> None:
    if opts.append_only:
        await _appender(opts, ssl_ctx, index, stats, end)
        return
    if opts.think_ms:
        # Users with think time arrive spread over one session's length, not all in the same instant.
        await trio.sleep(index / opts.clients * _SESSION_COMMANDS * opts.think_ms / 1000)
    i = 0
    while time.monotonic() < end:
        user = f"{opts.user_prefix}{(index + i) % opts.users}"
        i += 1
        try:
            await _session(opts, ssl_ctx, user, stats, index * 1_000_000 + i)
        except (OSError, EOFError, trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError):
            stats.errors += 1
            await trio.sleep(0.05)


async def _idler(opts: ImapBenchOptions, ssl_ctx: ssl.SSLContext | None, index: int, end: float) -> None:
    client = await _connect(opts, ssl_ctx)
    stats = _Stats()
    try:
        user = f"{opts.user_prefix}{index % opts.users}"
        await client.command(f'LOGIN {user} "{opts.password}"'.encode(), stats, "LOGIN")
        await client.command(b"SELECT INBOX", stats, "SELECT")
        await client.stream.send_all(b"i1 IDLE\r\n")
        with trio.move_on_at(trio.current_time() + max(0.0, end - time.monotonic())):
            while True:
                await client.read_line()
        await client.stream.send_all(b"DONE\r\n")
        await client.command(b"LOGOUT", stats, "LOGOUT")
    finally:
        await client.stream.aclose()


def _prepare_users(opts: ImapBenchOptions) -> None:
    """Create the bench users through the store API and seed their INBOX."""
    assert opts.store is not None
    with grpc.insecure_channel(opts.store) as channel:
        stub = store_pb2_grpc.MailStoreStub(channel)
        epoch = opts.epoch if opts.epoch is not None else stub.GetEpoch(store_pb2.GetEpochRequest()).epoch
        for u in range(opts.users):
            name = f"{opts.user_prefix}{u}"
            try:
                stub.CreateUser(store_pb2.CreateUserRequest(epoch=epoch, name=name, password=opts.password))
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
                continue
            for i in range(_SEED_MESSAGES):
                header = store_pb2.AppendHeader(epoch=epoch, user=name, mailbox="INBOX")
                stub.AppendOne(store_pb2.AppendRequest(header=header, data=make_message(i), last=True))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(opts: ImapBenchOptions, stats: _Stats, elapsed: float) -> dict[str, object]:
    per_command = {
        name: {
            "count": len(v),
            "p50_ms": round(statistics.median(v) * 1000, 2),
            "p99_ms": round(percentile(v, 0.99) * 1000, 2),
        }
        for name, v in sorted(stats.latencies.items())
    }
    non_login = [x for name, v in stats.latencies.items() if name != "LOGIN" for x in v]
    total_commands = sum(len(v) for v in stats.latencies.values())
    return {
        "mode": "append-only" if opts.append_only else "sessions",
        "clients": opts.clients,
        "think_ms": opts.think_ms,
        "idle": opts.idle,
        "users": opts.users,
        "seconds": round(elapsed, 2),
        "sessions": stats.sessions,
        "sessions_per_s": round(stats.sessions / elapsed, 1),
        "commands_per_s": round(total_commands / elapsed, 1),
        "appends_per_s": round(stats.appends / elapsed, 1),
        "p50_ms": round(statistics.median(non_login) * 1000, 2) if non_login else 0.0,
        "p99_ms": round(percentile(non_login, 0.99) * 1000, 2),
        "errors": stats.errors,
        "failed_commands": dict(stats.failures),
        "commands": per_command,
    }


def _ssl_context(opts: ImapBenchOptions) -> ssl.SSLContext | None:
    ssl_ctx: ssl.SSLContext | None = None
    if opts.tls or opts.starttls:
        if opts.cafile is not None:
            ssl_ctx = ssl.create_default_context(cafile=str(opts.cafile))
        else:
            ssl_ctx = ssl.create_default_context()
            ssl_ctx.check_hostname = False
            ssl_ctx.verify_mode = ssl.CERT_NONE
    return ssl_ctx


async def _run_part(opts: ImapBenchOptions, part: int, start: float) -> _Stats:
    """Clients i with i % procs == part (and the same share of IDLE holders), from `start` for --seconds."""
    ssl_ctx = _ssl_context(opts)
    stats = _Stats()
    await trio.sleep(max(0.0, start - time.monotonic()))
    end = start + opts.seconds
    # Bounded even if the server stops answering: give up 30 s past the end.
    with trio.move_on_after(opts.seconds + 30):
        async with trio.open_nursery() as nursery:
            for k in range(part, opts.idle, opts.procs):
                nursery.start_soon(_idler, opts, ssl_ctx, k, end)
            for i in range(part, opts.clients, opts.procs):
                nursery.start_soon(_loop, opts, ssl_ctx, i, stats, end)
    return stats


def _plain(stats: _Stats) -> dict[str, object]:
    return {
        "latencies": dict(stats.latencies),
        "sessions": stats.sessions,
        "errors": stats.errors,
        "appends": stats.appends,
        "failures": dict(stats.failures),
    }


def _client_process(opts: ImapBenchOptions, part: int, start: float, conn: object) -> None:
    """Entry point of one client process (multiprocessing spawn): sends back its stats."""
    stats = trio.run(_run_part, opts, part, start)
    conn.send(_plain(stats))  # type: ignore[attr-defined]
    conn.close()  # type: ignore[attr-defined]


def _merge(into: _Stats, part: dict[str, object]) -> None:
    latencies = part["latencies"]
    failures = part["failures"]
    assert isinstance(latencies, dict) and isinstance(failures, dict)
    for name, values in latencies.items():
        into.latencies[name].extend(values)
    for name, n in failures.items():
        into.failures[name] += n
    for attr in ("sessions", "errors", "appends"):
        value = part[attr]
        assert isinstance(value, int)
        setattr(into, attr, getattr(into, attr) + value)


def run_clients(opts: ImapBenchOptions) -> tuple[_Stats, float]:
    """All client loops, in this process or split over --procs processes; (stats, elapsed)."""
    if opts.procs <= 1:
        start = time.monotonic()
        stats = trio.run(_run_part, opts, 0, start)
        return stats, time.monotonic() - start
    ctx = multiprocessing.get_context("spawn")
    # Every process starts its clients at the same instant, once all have had time to import.
    start = time.monotonic() + 2.0 + 0.5 * opts.procs
    pipes, procs = [], []
    for part in range(opts.procs):
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_client_process, args=(opts, part, start, send), daemon=True)
        proc.start()
        send.close()
        pipes.append(receive)
        procs.append(proc)
    stats = _Stats()
    try:
        for receive in pipes:
            if receive.poll(max(1.0, start + opts.seconds + 40 - time.monotonic())):
                _merge(stats, receive.recv())
            else:
                stats.errors += 1  # a client process that never answered
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
    return stats, time.monotonic() - start


def client_cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # joined client processes
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_imap_bench(opts: ImapBenchOptions) -> int:
    stack: SpawnedStack | None = None
    if opts.spawn:
        stack = SpawnedStack(workers=opts.spawn_workers).start()
        opts = dataclasses.replace(opts, host="127.0.0.1", port=stack.port, store=stack.store_address, tls=False)
    try:
        if opts.store is not None:
            _prepare_users(opts)
        cpu_before = stack.cpu() if stack is not None else {}
        client_before = client_cpu()
        stats, elapsed = run_clients(opts)
        result = report(opts, stats, elapsed)
        cpu = {"bench": client_cpu() - client_before}
        if stack is not None:
            cpu.update({k: v - cpu_before[k] for k, v in stack.cpu().items()})
        sessions = max(1, stats.sessions)
        result["procs"] = opts.procs
        result["cpu_ms_per_session"] = {k: round(v * 1000 / sessions, 2) for k, v in cpu.items()}
        if stack is not None and opts.sort_messages:
            result.update(measure(stack.port, stack.store_address, opts.sort_messages, 5))
    finally:
        if stack is not None:
            stack.stop()
    if opts.output is not None:
        opts.output.parent.mkdir(parents=True, exist_ok=True)
        opts.output.write_text(json.dumps(result, indent=2) + "\n")
    if opts.json_output:
        print(json.dumps(result))
    else:
        print(
            f"{result['sessions_per_s']} sessions/s, {result['commands_per_s']} commands/s, "
            f"{result['appends_per_s']} APPEND/s; non-LOGIN p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms; "
            f"{opts.clients} clients + {opts.idle} IDLE, think {opts.think_ms} ms, {result['seconds']} s, "
            f"errors {result['errors']}"
        )
        print(f"  CPU ms per session: {result['cpu_ms_per_session']}")
        commands = result["commands"]
        assert isinstance(commands, dict)
        for name, row in commands.items():
            print(f"  {name:16} n={row['count']:6}  p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms")
    sys.stdout.flush()
    return 0 if result["sessions"] else 1
