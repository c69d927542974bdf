"""`mailha bench store`: durable append, fetch and flag-update throughput of the store.

Starts its own store process on a temp dir (or uses --store ADDR), then runs
timed phases with 1 and 16 concurrent gRPC clients. The 16 clients are 4
processes of 4 threads (one channel per process), so the client side is not
one GIL and costs less CPU than 16 processes: what is measured is the store.
Prints a table, or with --json one JSON object; the JSON is also written to
bench-results/store.json.
"""

from __future__ import annotations

import json
import os
import pathlib
import queue
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

from mailha_api import store_pb2
from store.channel import ONE_REQUEST_LIMIT
from store.client import AppendStream, StoreClient
from store.write_stream_client import Outcome, WriteStream

KIB = 1024
MIB = 1024 * KIB
RESULTS = pathlib.Path("bench-results") / "store.json"
CLIENTS = 16
# Clients per worker process (threads sharing one channel). Measured on this 2-core machine:
# 16 processes x 1 cost the client side ~0.56-0.63 ms of CPU per streamed append, 4 x 4 ~0.33-0.37 ms,
# and the client shares the cores with the store.
THREADS_PER_PROCESS = 4
# What `append_4k_c16_per_s` measures (also in the JSON as `append_4k_c16_mode`).
HEADLINE_PHASE = "append_4k_c16_stream1"
HEADLINE_MODE = "AppendPipeline: 16 client streams, 1 append in flight each"


@dataclass(frozen=True)
class BenchOptions:
    json_output: bool = False
    seconds: float = 3.0
    store: str | None = None


@dataclass(frozen=True)
class Job:
    address: str
    # "append" (unary AppendOne) | "append_stream" (AppendPipeline) | "fetch" | "flags" |
    # "epoch" (unary GetEpoch: the cost of a bare gRPC call here, for comparison) |
    # "append_writes" / "flags_writes" (AppendOne's / StoreFlags' request on a Writes stream,
    # one per worker process shared by its threads, as imapd shares one between its sessions)
    kind: str
    user: str
    mailbox_id: int
    epoch: int
    size: int
    start_at: float  # wall clock, so every worker starts together
    stop_at: float
    max_ops: int
    uid_hi: int = 0  # fetch/flags: UIDs 1..uid_hi exist
    window: int = 1  # append_stream: appends in flight per client
    threads: int = 1  # clients (threads, sharing one channel) per worker process


_client: StoreClient | None = None
_writes: WriteStream | None = None


def _connect(address: str) -> StoreClient:
    global _client, _writes
    if _client is None or _client.address != address:
        _client = StoreClient(address)
        _client.wait_ready()
        _writes = WriteStream(_client.stub)
    return _client


def _write(request: store_pb2.WriteRequest) -> None:
    """One write on this process's Writes stream, waited for."""
    assert _writes is not None
    answered: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
    _writes.send(request, answered.put)
    outcome = answered.get(timeout=60)
    if isinstance(outcome, Exception):
        raise outcome  # the stream ended: the phase fails as a unary call's would
    if outcome.error_code:
        raise RuntimeError(f"write failed: {outcome.error_message}")


def _warm_up(address: str) -> int:
    """Start the worker process and its channel before any timed phase (spawning is slow under load)."""
    _connect(address).epoch()
    time.sleep(0.5)  # hold this worker so the pool spawns all of them
    return os.getpid()


def _worker(job: Job) -> tuple[int, list[float]]:
    """Run `job.threads` clients until stop_at (or max_ops); return (operations, latencies in seconds)."""
    client = _connect(job.address)
    if job.threads == 1:
        return _run_client(job, client)
    results: list[tuple[int, list[float]]] = []
    threads = [threading.Thread(target=lambda: results.append(_run_client(job, client))) for _ in range(job.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(n for n, _ in results), [lat for _, lats in results for lat in lats]


def _run_client(job: Job, client: StoreClient) -> tuple[int, list[float]]:
    body = _message(job.size)
    rng = random.Random(os.getpid())
    latencies: list[float] = []
    while time.time() < job.start_at:
        time.sleep(0.001)
    stream = AppendStream(client) if job.kind == "append_stream" else None
    sent: list[float] = []
    header = store_pb2.AppendHeader(epoch=job.epoch, user=job.user, mailbox_id=job.mailbox_id, size=len(body))
    # Built once: the client shares the two cores with the store, so it should cost little.
    one_request = (
        store_pb2.AppendRequest(header=header, data=body, last=True) if job.size <= ONE_REQUEST_LIMIT else None
    )
    while len(latencies) < job.max_ops and time.time() < job.stop_at:
        t0 = time.perf_counter()
        if stream is not None:
            # Keep `window` appends in flight; each latency is send to durable reply.
            while stream.in_flight < job.window:
                sent.append(time.perf_counter())
                stream.send(header, body)
            reply = stream.receive()
            if reply.error_code:
                raise RuntimeError(f"append failed: {reply.error_message}")
            latencies.append(time.perf_counter() - sent.pop(0))
            continue
        elif job.kind == "append_writes":
            assert one_request is not None, "a Writes append is one request (up to 4 MiB)"
            _write(store_pb2.WriteRequest(append=one_request))
        elif job.kind == "append":
            if one_request is not None:
                client.stub.AppendOne(one_request, timeout=60)
            else:
                client.append_bytes(job.user, "", body, epoch=job.epoch, mailbox_id=job.mailbox_id)
        elif job.kind == "epoch":
            client.stub.GetEpoch(store_pb2.GetEpochRequest(), timeout=60)
        elif job.kind == "fetch":
            uid = rng.randint(1, job.uid_hi)
            req = store_pb2.FetchRequest(user=job.user, mailbox_id=job.mailbox_id, uid_set=str(uid), with_body=True)
            for _ in client.stub.Fetch(req, timeout=60):
                pass
        else:
            uid = rng.randint(1, job.uid_hi)
            mode = store_pb2.FLAG_MODE_ADD if rng.random() < 0.5 else store_pb2.FLAG_MODE_REMOVE
            flags = store_pb2.StoreFlagsRequest(
                epoch=job.epoch,
                user=job.user,
                mailbox_id=job.mailbox_id,
                uid_set=str(uid),
                mode=mode,
                flags=["\\Flagged"],
            )
            if job.kind == "flags_writes":
                _write(store_pb2.WriteRequest(store_flags=flags))
            else:
                client.stub.StoreFlags(flags, timeout=60)
        latencies.append(time.perf_counter() - t0)
    if stream is not None:
        while stream.in_flight:
            stream.receive()
        stream.close()
    return len(latencies), latencies


def _message(size: int) -> bytes:
    header = b"From: bench@mailha.test\r\nTo: bench@mailha.test\r\nSubject: bench\r\n\r\n"
    line = b"x" * 76 + b"\r\n"
    body = line * ((size - len(header)) // len(line) + 1)
    return (header + body)[:size]


@dataclass(frozen=True)
class PhaseResult:
    name: str
    ops: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def per_s(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0


def _phase(pool: ProcessPoolExecutor, name: str, template: Job, clients: int, seconds: float) -> PhaseResult:
    start = time.time() + 0.3
    threads = min(THREADS_PER_PROCESS, clients)
    job = Job(**{**template.__dict__, "start_at": start, "stop_at": start + seconds, "threads": threads})
    futures = [pool.submit(_worker, job) for _ in range(clients // threads)]
    results = [f.result() for f in futures]
    elapsed = max(time.time(), start) - start
    latencies = sorted(lat for _, lats in results for lat in lats)
    ops = sum(n for n, _ in results)
    # Wall time from the common start until the last client finished (bounded phases end early).
    used = max(elapsed, 1e-9)
    p50 = statistics.median(latencies) * 1000 if latencies else 0.0
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000 if latencies else 0.0
    return PhaseResult(name, ops, used, p50, p99)


def _start_store(data: pathlib.Path) -> tuple[subprocess.Popen[bytes], str]:
    address = f"unix:{data / 'store.sock'}"
    argv = [sys.executable, "-m", "mailha.cli", "store", "serve", "--data", str(data / "db"), "--listen", address]
    proc = subprocess.Popen([*argv, "--fence-next"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, address


def run_bench(options: BenchOptions) -> int:
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="mailha-bench-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        if options.store:
            address = options.store
        else:
            proc, address = _start_store(tmp)
        results = _run_phases(address, options.seconds)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    if options.json_output:
        print(json.dumps(results))
    else:
        _print_table(results)
    return 0


def _run_phases(address: str, seconds: float) -> dict[str, float | int | str]:
    with StoreClient(address) as admin:
        admin.wait_ready()
        epoch = admin.epoch()
        user = f"bench{os.getpid()}"
        admin.create_user(user, "bench-password", epoch=epoch)
        mid = admin.mailbox_id(user, "INBOX")
    template = Job(address, "append", user, mid, epoch, 4 * KIB, 0.0, 0.0, 10**9)
    out: dict[str, float | int | str] = {"seconds_per_phase": seconds, "clients": CLIENTS, "address": address}
    phases: list[tuple[str, Job, int, float]] = []
    # 4 KiB first, the unary and the streamed 16-client phases next to each other (same
    # state of the database and the disk), so the two paths compare fairly.
    phases.append(("append_4k_c1", template, 1, seconds))
    phases.append(("append_4k_c1_writes", _with(template, kind="append_writes"), 1, seconds))
    phases.append(("append_4k_c16_unary", template, CLIENTS, seconds))
    # 16 clients each with one append outstanding, on an AppendPipeline stream (the headline),
    # and each with 4 in flight (LMTP/import style).
    phases.append(("append_4k_c16_stream1", _with(template, kind="append_stream", window=1), CLIENTS, seconds))
    phases.append(("append_4k_c16_stream", _with(template, kind="append_stream", window=4), CLIENTS, seconds))
    for clients in (1, CLIENTS):
        phases.append((f"append_100k_c{clients}", _with(template, size=100 * KIB), clients, seconds))
    # 20 MiB: a bounded number of appends, not a timed loop (each is seconds of disk work).
    phases.append(("append_20m_c1", _with(template, size=20 * MIB, max_ops=3), 1, 120.0))
    phases.append(("append_20m_c16", _with(template, size=20 * MIB, max_ops=1), CLIENTS, 300.0))
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=CLIENTS, mp_context=ctx) as pool:
        for _ in range(3):
            if len(set(pool.map(_warm_up, [address] * CLIENTS))) == CLIENTS:
                break
        for name, job, clients, secs in phases:
            r = _phase(pool, name, job, clients, secs)
            _record(out, r)
        with StoreClient(address) as admin:
            uid_hi = admin.select(user, "INBOX").mailbox.status.uidnext - 1
        reads = _with(template, size=0, uid_hi=min(uid_hi, 2000))
        _record(out, _phase(pool, "noop_grpc_c16", _with(reads, kind="epoch"), CLIENTS, seconds))
        for clients in (1, CLIENTS):
            _record(out, _phase(pool, f"fetch_4k_c{clients}", _with(reads, kind="fetch"), clients, seconds))
            _record(out, _phase(pool, f"flags_c{clients}", _with(reads, kind="flags"), clients, seconds))
            _record(out, _phase(pool, f"flags_c{clients}_writes", _with(reads, kind="flags_writes"), clients, seconds))
    for suffix in ("per_s", "ops", "p50_ms", "p99_ms"):
        out[f"append_4k_c16_{suffix}"] = out[f"{HEADLINE_PHASE}_{suffix}"]
    out["append_4k_c16_mode"] = HEADLINE_MODE
    out["append_20m_seconds"] = round(float(out["append_20m_c1_p50_ms"]) / 1000, 3)
    out["fetches_per_s"] = out["fetch_4k_c16_per_s"]
    out["flag_updates_per_s"] = out["flags_c16_per_s"]
    return out


def _with(job: Job, **changes: object) -> Job:
    return Job(**{**job.__dict__, **changes})


def _record(out: dict[str, float | int | str], r: PhaseResult) -> None:
    out[f"{r.name}_per_s"] = round(r.per_s, 1)
    out[f"{r.name}_ops"] = r.ops
    out[f"{r.name}_p50_ms"] = round(r.p50_ms, 2)
    out[f"{r.name}_p99_ms"] = round(r.p99_ms, 2)


def _print_table(results: dict[str, float | int | str]) -> None:
    names = sorted({k[: -len("_per_s")] for k in results if k.endswith("_per_s") and f"{k[:-6]}_ops" in results})
    print(f"{'phase':<22} {'ops':>8} {'ops/s':>10} {'p50 ms':>10} {'p99 ms':>10}")
    for name in names:
        print(
            f"{name:<22} {results[name + '_ops']:>8} {results[name + '_per_s']:>10} "
            f"{results[name + '_p50_ms']:>10} {results[name + '_p99_ms']:>10}"
        )
    print(
        f"append_4k_c16_per_s = {results['append_4k_c16_per_s']} ({results['append_4k_c16_mode']}; "
        f"unary AppendOne: {results['append_4k_c16_unary_per_s']}); "
        f"append_20m_seconds = {results['append_20m_seconds']}"
    )
