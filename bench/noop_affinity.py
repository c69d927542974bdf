"""Single-session NOOP latency of Dovecot and mailha with the client and the servers pinned
to CPUs (issue 13, tenth round): which of the two latency bands is which.

    python -m bench.noop_affinity [--rounds 3] [--samples 1000] [--conditions same,split,free]

One throwaway Dovecot (bench/dovecot.py) and one throwaway mailha (store + imapd with local
reads, as `mailha bench compare` starts them), the compare benchmark's single-session user
seeded in both. Then, round after round, for each condition and each server (the order of
both turned every round), one imaplib session in a child process: LOGIN, SELECT INBOX, warm
up, then `--samples` timed `client.noop()` calls, as `mailha bench compare` times them.

Conditions (the client's CPU set; the server's, every thread of every process: Dovecot's
master and all its children, whose later children inherit it; mailha's store and imapd):

- same: client and server both on one CPU (the round's CPU, alternating 0 and 1);
- split: client on one CPU, server on the other;
- free: nobody pinned (every CPU allowed: what `bench compare` runs).

Besides each run's p10/p50/p90 the server's CPU per NOOP (/proc schedstat of all its
threads), the times its threads were put on a CPU per NOOP (schedstat's third field: one per
wake-up, whichever thread), which of its threads ran (name and count, above 1 % of the
NOOPs), the client's own context switches, and each CPU's halts (cpuidle state usage)
per NOOP: a wake-up that finds its CPU halted is the slow one in a VM.
"""

from __future__ import annotations

import argparse
import imaplib
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import trio

from bench import compare, dovecot, process_cpu
from bench.imap_spawn import SpawnedStack
from store.client import StoreClient

CONDITIONS: Final = ("same", "split", "free")
_WARMUP: Final = 200
_CPUS: Final = frozenset(range(os.cpu_count() or 1))


@dataclass(frozen=True)
class ThreadStat:
    name: str
    cpu_ns: int
    slices: int  # times put on a CPU (schedstat's third field)


def _threads(pids: Iterable[int]) -> dict[int, ThreadStat]:
    out: dict[int, ThreadStat] = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue  # ended meanwhile
        for tid in tids:
            try:
                fields = pathlib.Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
                name = pathlib.Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            except OSError:
                continue
            out[int(tid)] = ThreadStat(f"{process_cpu.comm(pid)}/{name}", int(fields[0]), int(fields[2]))
    return out


def _halts() -> dict[int, int]:
    """Per CPU, how often it entered its deepest idle state (halt) so far."""
    out: dict[int, int] = {}
    for cpu in sorted(_CPUS):
        states = sorted(pathlib.Path(f"/sys/devices/system/cpu/cpu{cpu}/cpuidle").glob("state*"))
        if states:
            out[cpu] = int((states[-1] / "usage").read_text())
    return out


def _pin(pids: Iterable[int], cpus: frozenset[int]) -> None:
    for pid in pids:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:
                pass  # a thread that ended meanwhile


def _client(port: int, cpus: frozenset[int], samples: int) -> None:
    os.sched_setaffinity(0, cpus)
    client = imaplib.IMAP4("127.0.0.1", port)
    client.login(compare.SOLO, compare.PASSWORD)
    client.select("INBOX")
    for _ in range(_WARMUP):
        client.noop()
    print(f"ready {client.sock.getsockname()[1]}", flush=True)
    sys.stdin.readline()
    times = []
    usage = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(samples):
        start = time.perf_counter()
        status, reply = client.noop()
        times.append(time.perf_counter() - start)
        if status != "OK":
            raise RuntimeError(f"NOOP failed: {reply!r}")
    after = resource.getrusage(resource.RUSAGE_SELF)
    times.sort()
    switches = (after.ru_nvcsw - usage.ru_nvcsw + after.ru_nivcsw - usage.ru_nivcsw) / samples
    result = {
        "p10_ms": round(times[len(times) // 10] * 1000, 4),
        "p50_ms": round(statistics.median(times) * 1000, 4),
        "p90_ms": round(times[len(times) * 9 // 10] * 1000, 4),
        "client_switches": round(switches, 2),
    }
    print(json.dumps(result), flush=True)
    client.logout()


def _tree(roots: list[int]) -> list[int]:
    """`roots` and every process below them, from each process's parent in /proc (the
    `children` files are not reliable while the processes run: Dovecot's session process
    was missed in some runs)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(pathlib.Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # ended meanwhile
    found = set(roots)
    grew = True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in found} - found
        found |= below
        grew = bool(below)
    return sorted(found)


def _holders(port: int, peer_port: int) -> set[int]:
    """The processes holding the server side of the loopback connection port <- peer_port."""
    inodes = set()
    for line in pathlib.Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
        if int(local, 16) == port and int(remote, 16) == peer_port:
            inodes.add(f"socket:[{fields[9]}]")
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") in inodes for fd in fds):
                found.add(int(entry))
        except OSError:
            continue  # ended meanwhile, or not ours to look at
    return found


def _server_pids(server: str, dove: dovecot.DovecotStack, mine: SpawnedStack) -> list[int]:
    return _tree(
        [p.pid for p in ((dove.master,) if server == "dovecot" else (mine.store, mine.imapd)) if p is not None]
    )


def _cpu_sets(condition: str, round_index: int) -> tuple[frozenset[int], frozenset[int]]:
    """(client's, server's) CPUs."""
    if condition == "free" or len(_CPUS) < 2:
        return _CPUS, _CPUS
    first = round_index % 2
    other = 1 - first
    return frozenset({first}), frozenset({first if condition == "same" else other})


def measure_one(
    server: str, condition: str, *, round_index: int, samples: int, dove: dovecot.DovecotStack, mine: SpawnedStack
) -> dict[str, object]:
    port = dove.imap_port if server == "dovecot" else mine.port
    client_cpus, server_cpus = _cpu_sets(condition, round_index)
    # Pinned before the client connects: Dovecot's master forks the session process, which
    # inherits its CPU set (its /proc entries are not always readable afterwards: it may
    # then go uncounted, never unpinned).
    _pin(_server_pids(server, dove, mine), server_cpus)
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.noop_affinity",
            "--client",
            str(port),
            ",".join(map(str, sorted(client_cpus))),
            str(samples),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdin is not None and child.stdout is not None
        ready = child.stdout.readline().split()
        if ready[:1] != ["ready"]:
            raise RuntimeError("the NOOP client did not get ready")
        # Dovecot's session process is found by the connection it holds: a scan of the
        # master's children missed it in some runs.
        pids = sorted({*_server_pids(server, dove, mine), *_holders(port, int(ready[1]))})
        _pin(pids, server_cpus)
        before, halts_before = _threads(pids), _halts()
        child.stdin.write("go\n")
        child.stdin.flush()
        line = child.stdout.readline()
        after, halts_after = _threads(pids), _halts()
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        _pin(_server_pids(server, dove, mine), _CPUS)
    if child.returncode != 0 or not line:
        raise RuntimeError(f"the NOOP client failed ({child.returncode})")
    result: dict[str, object] = json.loads(line)
    cpu = sum(a.cpu_ns - before[t].cpu_ns for t, a in after.items() if t in before)
    slices = sum(a.slices - before[t].slices for t, a in after.items() if t in before)
    ran: dict[str, float] = {}
    for tid, a in after.items():
        count = a.slices - before[tid].slices if tid in before else 0
        if count > samples // 100:
            ran[a.name] = round(ran.get(a.name, 0.0) + count / samples, 2)
    result |= {
        # False when the process serving the session could not be read (Dovecot's, at times):
        # server_cpu_us and server_wakeups then miss it.
        "session_seen": any(a.slices - before[t].slices >= samples // 2 for t, a in after.items() if t in before),
        "server_cpu_us": round(cpu / samples / 1000, 1),
        "server_wakeups": round(slices / samples, 2),
        "threads_ran": ran,
        "halts": {cpu: round((halts_after[cpu] - halts_before[cpu]) / samples, 2) for cpu in halts_after},
        "loadavg": compare._loadavg(),
    }
    return result


def run(
    rounds: int, samples: int, conditions: tuple[str, ...], servers: tuple[str, ...] = compare.SERVERS
) -> dict[str, object]:
    reason = dovecot.available()
    if reason is not None:
        raise SystemExit(f"bench.noop_affinity: {reason}")
    dove = dovecot.DovecotStack()
    mine = SpawnedStack()
    runs: list[dict[str, object]] = []
    try:
        dove.start({compare.SOLO: compare.PASSWORD})
        mine.start()
        with StoreClient(mine.store_address) as store:
            store.create_user(compare.SOLO, compare.PASSWORD)
        for port in (dove.imap_port, mine.port):
            trio.run(compare._seed_user, port, compare.SOLO)
        for r in range(rounds):
            turned = conditions[r % len(conditions) :] + conditions[: r % len(conditions)]
            for condition in turned:
                for server in servers if r % 2 == 0 else servers[::-1]:
                    one = measure_one(server, condition, round_index=r, samples=samples, dove=dove, mine=mine)
                    runs.append({"round": r, "condition": condition, "server": server} | one)
                    print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    finally:
        mine.stop()
        dove.stop()
    summary: dict[str, dict[str, float]] = {}
    for condition in conditions:
        if len(servers) < 2:
            continue
        p50 = {
            s: [float(str(x["p50_ms"])) for x in runs if x["condition"] == condition and x["server"] == s]
            for s in compare.SERVERS
        }
        ratios = [m / d for m, d in zip(p50["mailha"], p50["dovecot"], strict=True) if d]
        summary[condition] = {
            "dovecot_p50_ms": round(statistics.median(p50["dovecot"]), 4),
            "mailha_p50_ms": round(statistics.median(p50["mailha"]), 4),
            "ratio_median_of_rounds": round(statistics.median(ratios), 2) if ratios else 0.0,
        }
    return {"samples": samples, "rounds": rounds, "summary": summary, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--client"]:
        _client(int(args_in[1]), frozenset(int(c) for c in args_in[2].split(",")), int(args_in[3]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.noop_affinity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=1000, help="timed NOOPs per run")
    parser.add_argument(
        "--conditions", default=",".join(CONDITIONS), help=f"comma-separated, of {', '.join(CONDITIONS)}"
    )
    parser.add_argument("--servers", default=",".join(compare.SERVERS), help="comma-separated: dovecot, mailha")
    args = parser.parse_args(args_in)
    servers = tuple(s for s in compare.SERVERS if s in args.servers.split(","))
    conditions = tuple(c.strip() for c in args.conditions.split(",") if c.strip())
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown or not conditions or args.rounds < 1 or args.samples < 10:
        parser.error(
            f"unknown condition {unknown[0]}" if unknown else "need a condition, --rounds >= 1, --samples >= 10"
        )
    print(json.dumps(run(args.rounds, args.samples, conditions, servers or compare.SERVERS), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
