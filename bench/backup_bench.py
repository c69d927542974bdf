"""`mailha bench backup`: full/incremental backup and restore speed, and what a backup costs writers.

Builds a store of --size-mib MiB (default 1 GiB) of mixed messages (4 KB to
1 MB, log-uniform) in its own store process, then:

- full backup (compacted LMDB copy + sha256 + fsync) while a writer process
  appends 4 KB messages in a loop: `full_backup_mib_per_s` (backup size /
  time), `max_writer_stall_ms` (the longest append during the backup), and
  the same writer's longest append in a 5 s window without a backup just
  before (`writer_baseline_max_ms`) to tell the backup's cost from noise;
- 1% changes (flags on 1% of the messages, 1% more messages appended), then
  `incremental_seconds`;
- `restore_mib_per_s`: full + incremental into a new directory (restored
  size / time);
- `backup follow` (every FOLLOW_INTERVAL s) while the writer appends again:
  for each acknowledged append, the time until an incremental holding it was
  complete — `follow_rpo_max_s` / `follow_rpo_p50_s`, the data a lost volume
  would cost at worst / typically.

Prints a table, or with --json one JSON object; also bench-results/backup.json.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import pathlib
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event

from backup.create import create_full, create_incremental
from backup.follow import Follower
from backup.repository import chain
from backup.restore import restore_chain
from bench.store_bench import _start_store
from mailha_api import store_pb2
from store.client import AppendStream, StoreClient

KIB = 1024
MIB = 1024 * KIB
RESULTS = pathlib.Path("bench-results") / "backup.json"
USERS = 8
MIN_SIZE, MAX_SIZE = 4 * 1000, 1000 * 1000
BASELINE_SECONDS = 5.0  # the writer alone, before the backup: its usual longest append
FOLLOW_INTERVAL = 2.0  # `backup follow --interval` of the RPO run
FOLLOW_SECONDS = 12.0


@dataclass(frozen=True)
class BackupBenchOptions:
    json_output: bool = False
    size_mib: int = 1024
    work_dir: pathlib.Path | None = None
    max_rate_mib: float | None = None


def _body(rng: random.Random, size: int, n: int) -> bytes:
    head = f"From: bench@example.org\r\nMessage-ID: <b{n}@bench>\r\nSubject: backup bench {n}\r\n\r\n".encode()
    filler = rng.randbytes(size // 2).hex().encode()[: max(0, size - len(head))]
    return head + filler


def _sizes(rng: random.Random) -> float:
    return math.exp(rng.uniform(math.log(MIN_SIZE), math.log(MAX_SIZE)))


def _fill(client: StoreClient, target_bytes: int, rng: random.Random, start: int) -> tuple[int, int]:
    """Append mixed messages round-robin over the users until `target_bytes`; (messages, bytes)."""
    epoch = client.epoch()
    stream = AppendStream(client)
    count = written = 0
    while written < target_bytes:
        size = int(_sizes(rng))
        data = _body(rng, size, start + count)
        user = f"user{count % USERS}"
        flags = ["\\Seen"] if rng.random() < 0.7 else []
        header = store_pb2.AppendHeader(epoch=epoch, user=user, mailbox="INBOX", flags=flags, size=len(data))
        stream.send(header, data)
        while stream.in_flight >= 16:
            stream.receive()
        count += 1
        written += len(data)
    while stream.in_flight:
        stream.receive()
    stream.close()
    return count, written


def _writer(address: str, stop: Event, out: multiprocessing.Queue[list[tuple[float, float]]]) -> None:
    """Append 4 KB messages one at a time until `stop`; send (start wall time, seconds) of each."""
    samples: list[tuple[float, float]] = []
    with StoreClient(address) as client:
        epoch = client.epoch()
        data = _body(random.Random(7), 4000, 0)
        deadline = time.monotonic() + 600
        while not stop.is_set() and time.monotonic() < deadline:
            started = time.time()
            t0 = time.perf_counter()
            client.append_bytes("writer", "INBOX", data, epoch=epoch)
            samples.append((started, time.perf_counter() - t0))
    out.put(samples)


def _window(samples: list[tuple[float, float]], start: float, end: float) -> tuple[float, float, int]:
    """Longest and 99th-percentile append overlapping [start, end] in ms, and how many overlapped."""
    inside = sorted(s for t, s in samples if t + s >= start and t <= end)
    if not inside:
        return 0.0, 0.0, 0
    return inside[-1] * 1000, inside[int(0.99 * (len(inside) - 1))] * 1000, len(inside)


def _start_writer(address: str) -> tuple[Event, multiprocessing.Queue[list[tuple[float, float]]], BaseProcess]:
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    queue: multiprocessing.Queue[list[tuple[float, float]]] = ctx.Queue()
    writer = ctx.Process(target=_writer, args=(address, stop, queue), daemon=True)
    writer.start()
    return stop, queue, writer


def _follow_rpo(lmdb_dir: pathlib.Path, repo: pathlib.Path, address: str) -> tuple[float, float, int, int]:
    """(max, median) seconds from an append's acknowledgement to the end of the incremental holding it,
    over the appends a follow cycle took in; how many; how many incrementals."""
    stop, queue, writer = _start_writer(address)
    follower = Follower(lmdb_dir, repo)
    cycles: list[tuple[float, float]] = []  # (snapshot time, incremental complete)
    time.sleep(1.0)
    started = time.monotonic()
    while time.monotonic() - started < FOLLOW_SECONDS:
        t0 = time.monotonic()
        step = follower.step()
        if step.created is not None:
            cycles.append((step.created.manifest.created, time.time()))
        time.sleep(max(0.0, FOLLOW_INTERVAL - (time.monotonic() - t0)))
    stop.set()
    samples = queue.get(timeout=60)
    writer.join(timeout=30)
    first_snapshot = cycles[0][0] if cycles else 0.0
    exposures = []
    for begun, seconds in samples:
        acked = begun + seconds
        if acked < first_snapshot:
            continue  # held by the first incremental of the run, which also took the time before
        done = next((complete for snapshot_at, complete in cycles if snapshot_at >= acked), None)
        if done is not None:
            exposures.append(done - acked)
    exposures.sort()
    if not exposures:
        return 0.0, 0.0, 0, len(cycles)
    return exposures[-1], exposures[len(exposures) // 2], len(exposures), len(cycles)


def _change_one_percent(client: StoreClient, messages: int, rng: random.Random) -> None:
    epoch = client.epoch()
    per_user = max(1, messages // 100 // USERS)
    for u in range(USERS):
        user = f"user{u}"
        mid = client.mailbox_id(user, "INBOX")
        uids = sorted(rng.sample(range(1, messages // USERS), per_user))
        req = store_pb2.StoreFlagsRequest(
            epoch=epoch,
            user=user,
            mailbox_id=mid,
            uid_set=",".join(map(str, uids)),
            mode=store_pb2.FLAG_MODE_ADD,
            flags=["\\Flagged"],
        )
        client.stub.StoreFlags(req)


def run_bench(options: BackupBenchOptions) -> int:
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="mailha-bench-backup-", dir=options.work_dir))
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc, address = _start_store(tmp)
        results = _run(tmp, address, options.size_mib * MIB, options.max_rate_mib)
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
        for key, value in results.items():
            print(f"{key:<32} {value}")
    return 0


def _run(
    tmp: pathlib.Path, address: str, target_bytes: int, max_rate_mib: float | None
) -> dict[str, float | int | str]:
    rng = random.Random(16)
    lmdb_dir = tmp / "db" / "lmdb"
    repo = tmp / "repo"
    with StoreClient(address, timeout=300) as client:
        client.wait_ready()
        for u in range(USERS):
            client.create_user(f"user{u}", "bench-password", default_mailboxes=False)
            client.stub.CreateMailbox(
                store_pb2.CreateMailboxRequest(epoch=client.epoch(), user=f"user{u}", name="INBOX")
            )
        client.create_user("writer", "bench-password")
        t0 = time.perf_counter()
        messages, mail_bytes = _fill(client, target_bytes, rng, 0)
        fill_seconds = time.perf_counter() - t0

        stop, queue, writer = _start_writer(address)
        time.sleep(1.0)  # the writer is connected and appending
        baseline_start = time.time()
        time.sleep(BASELINE_SECONDS)
        backup_start = time.time()
        full = create_full(lmdb_dir, repo, max_rate=max_rate_mib * MIB if max_rate_mib else None)
        backup_end = time.time()
        time.sleep(0.5)
        stop.set()
        samples = queue.get(timeout=60)
        writer.join(timeout=30)
        stall_ms, during_p99, during = _window(samples, backup_start, backup_end)
        stall_at = max(
            ((t, d) for t, d in samples if t + d >= backup_start and t <= backup_end),
            key=lambda x: x[1],
            default=(0, 0),
        )[0]
        baseline_ms, baseline_p99, baseline_n = _window(samples, baseline_start, backup_start)

        _change_one_percent(client, messages, rng)
        _fill(client, mail_bytes // 100, rng, messages)
        incremental = create_incremental(lmdb_dir, repo, chain(full.path)[-1])
        members = chain(incremental.path)
        rpo_max, rpo_p50, rpo_appends, rpo_incrementals = _follow_rpo(lmdb_dir, repo, address)

    restored = tmp / "restored" / "lmdb"
    t0 = time.perf_counter()
    restore_chain(members, restored)
    restore_seconds = time.perf_counter() - t0
    restored_bytes = (restored / "data.mdb").stat().st_size
    full_mib = full.manifest.stored_bytes / MIB
    return {
        "messages": messages,
        "mail_mib": round(mail_bytes / MIB, 1),
        "fill_seconds": round(fill_seconds, 1),
        "store_file_mib": round(os.path.getsize(lmdb_dir / "data.mdb") / MIB, 1),
        "full_backup_mib": round(full_mib, 1),
        "full_backup_seconds": round(full.seconds, 2),
        "full_backup_mib_per_s": round(full_mib / full.seconds, 1),
        "max_writer_stall_ms": round(stall_ms, 1),
        "max_writer_stall_at_s": round(stall_at - backup_start, 2),  # when it began, from the backup's start
        "writer_p99_during_backup_ms": round(during_p99, 1),
        "writer_appends_per_s_during_backup": round(during / (backup_end - backup_start), 1),
        "writer_baseline_max_ms": round(baseline_ms, 1),
        "writer_baseline_p99_ms": round(baseline_p99, 1),
        "writer_baseline_appends_per_s": round(baseline_n / BASELINE_SECONDS, 1),
        "max_rate_mib_per_s": max_rate_mib or 0,
        "incremental_seconds": round(incremental.seconds, 2),
        "incremental_mib": round(incremental.manifest.stored_bytes / MIB, 1),
        "restore_seconds": round(restore_seconds, 2),
        "restore_mib_per_s": round(restored_bytes / MIB / restore_seconds, 1),
        "follow_interval_s": FOLLOW_INTERVAL,
        "follow_rpo_max_s": round(rpo_max, 2),
        "follow_rpo_p50_s": round(rpo_p50, 2),
        "follow_appends": rpo_appends,
        "follow_incrementals": rpo_incrementals,
        "loadavg": pathlib.Path("/proc/loadavg").read_text().strip(),
    }
