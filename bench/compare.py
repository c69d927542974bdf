"""`mailha bench compare`: mailha against a throwaway Dovecot, same clients, one run.

Both servers get the same users (seeded with the same messages over IMAP) and
run side by side on loopback; every workload runs against one, then the other,
alternating the order each round, so both see the same machine noise:

- mixed: the `mailha bench imap` session loop with clients like imaplib
  (synchronizing literals, the literal and its CRLF in two writes, STATUS before
  SELECT), login per session, split over client processes;
- single: one imaplib session, p50/p99 of NOOP, SELECT, FETCH headers, FETCH
  body (a seeded 4 KiB message; FETCH_BODY_1MB: a 1 MiB one appended just before),
  STORE (+FLAGS \\Seen again and again: a no-op after the first), STORE_CHANGE
  (+FLAGS/-FLAGS \\Flagged in turn: a real change each time), APPEND 200 B / 4 KiB / 1 MiB,
  SEARCH;
- think: many concurrent sessions with think time, p99 per command.

Every ratio is mailha ÷ Dovecot (sessions/s: above 1 is better; times and
CPU: below 1 is better).
"""

from __future__ import annotations

import dataclasses
import imaplib
import itertools
import json
import pathlib
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import trio

from bench import dovecot, process_cpu
from bench.imap_bench import ImapBenchOptions, client_cpu, make_message, percentile, report, run_clients
from bench.imap_spawn import SpawnedStack
from bench.imap_wire import ResponseReader
from store.client import StoreClient

PASSWORD: Final = "bench-password"
PREFIX: Final = "cmp"
SOLO: Final = "cmpsolo"  # the single-session user, outside the loops' users
SEED: Final = 60
SERVERS: Final = ("dovecot", "mailha")


@dataclass(frozen=True)
class CompareOptions:
    users: int = 100
    clients: int = 50
    seconds: float = 20.0
    rounds: int = 2
    procs: int = 2
    think_clients: int = 300
    think_ms: float = 1000.0
    samples: int = 50
    mailha_workers: int = 1
    only_single: bool = False  # just the single-session p50/p99 workload (b): no load runs
    json_output: bool = False
    output: pathlib.Path | None = pathlib.Path("bench-results/compare.json")


# ---- seeding: the same messages into both servers, over IMAP ------------------------------
async def _seed_user(port: int, user: str) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    reader = ResponseReader(stream)
    try:
        await reader.read_line()
        # LOGIN first: before it, a server may refuse long input (mailha: 8 KiB lines).
        await stream.send_all(b'a LOGIN %s "%s"\r\n' % (user.encode(), PASSWORD.encode()))
        while not (line := await reader.read_line()).startswith(b"a "):
            pass
        if not line.startswith(b"a OK"):
            raise RuntimeError(f"seeding {user}: LOGIN failed: {line[:200]!r}")
        parts = [b"b APPEND INBOX"]
        for i in range(SEED):
            msg = make_message(i)
            parts.append(b" {%d+}\r\n" % len(msg) + msg)
        parts.append(b"\r\nc LOGOUT\r\n")
        await stream.send_all(b"".join(parts))
        while True:
            line = await reader.read_line()
            if line.startswith(b"b ") and not line.startswith(b"b OK"):
                raise RuntimeError(f"seeding {user} failed: {line[:200]!r}")
            if line.startswith(b"c "):
                return
    finally:
        await stream.aclose()


async def _seed(port: int, users: list[str]) -> None:
    limiter = trio.CapacityLimiter(8)

    async def one(user: str) -> None:
        async with limiter:
            await _seed_user(port, user)

    async with trio.open_nursery() as nursery:
        for user in users:
            nursery.start_soon(one, user)


# ---- workloads ----------------------------------------------------------------------------
def _load_options(opts: CompareOptions, port: int, *, think: bool) -> ImapBenchOptions:
    return ImapBenchOptions(
        port=port,
        clients=opts.think_clients if think else opts.clients,
        seconds=opts.seconds,
        users=opts.users,
        user_prefix=PREFIX,
        password=PASSWORD,
        think_ms=opts.think_ms if think else 0.0,
        procs=opts.procs,
        imaplib_like=True,
        output=None,
    )


CpuProbe = Callable[[], process_cpu.CpuSnapshot]


def _run_load(bench_opts: ImapBenchOptions, server_cpu: CpuProbe) -> dict[str, object]:
    cpu_before, client_before = server_cpu(), client_cpu()
    stats, elapsed = run_clients(bench_opts)
    result = report(bench_opts, stats, elapsed)
    sessions = max(1, stats.sessions)
    cpu_after = server_cpu()
    used = process_cpu.cpu_by_process(cpu_before, cpu_after)
    result["server_cpu_ms_per_session"] = round(sum(used.values()) * 1000 / sessions, 2)
    result["server_cpu_ms_per_session_by_process"] = {
        name: round(seconds * 1000 / sessions, 2) for name, seconds in sorted(used.items())
    }
    result["client_cpu_ms_per_session"] = round((client_cpu() - client_before) * 1000 / sessions, 2)
    # Faults that waited for the disk: a loop stalled on LMDB page-ins would show here.
    result["server_major_faults_by_process"] = process_cpu.major_faults_by_process(cpu_before, cpu_after)
    result["loadavg"] = _loadavg()
    return result


_SINGLE: Final = (
    "NOOP",
    "SELECT",
    "FETCH_HEADERS",
    "FETCH_BODY",
    "STORE",
    "STORE_CHANGE",
    "APPEND_200B",
    "APPEND_4KB",
    "APPEND_1MB",
    "FETCH_BODY_1MB",
    "SEARCH",
)


def _single_session(port: int, samples: int) -> dict[str, dict[str, float]]:
    """One imaplib session, each command `samples` times (1 MiB APPEND a fifth as often)."""
    small = make_message(1, 200)
    medium = make_message(2, 4096)
    large = make_message(3, 1024 * 1024)
    client = imaplib.IMAP4("127.0.0.1", port)
    out: dict[str, dict[str, float]] = {}
    try:
        client.login(SOLO, PASSWORD)
        client.select("INBOX")
        # The last message once APPEND_1MB ran (FETCH_BODY_1MB follows it): 1 MiB. FETCH_BODY
        # fetches the last seeded message (4 KiB) in every round: fetching "the last message"
        # took a 1 MiB one from the second round on, so its median mixed the two sizes.
        large_seq = [0]
        toggle = itertools.cycle(("+FLAGS", "-FLAGS"))
        calls: dict[str, Callable[[], tuple[str, object]]] = {
            "NOOP": client.noop,
            "SELECT": lambda: client.select("INBOX"),
            "FETCH_HEADERS": lambda: client.fetch("1:5", "(FLAGS BODY.PEEK[HEADER])"),
            "FETCH_BODY": lambda: client.fetch(str(SEED), "(BODY.PEEK[])"),
            "FETCH_BODY_1MB": lambda: client.fetch(str(large_seq[0]), "(BODY.PEEK[])"),
            # Sets \Seen once, then changes nothing (each server may answer without a write).
            "STORE": lambda: client.store("1", "+FLAGS", "\\Seen"),
            # Every call changes the flag: a real write each time.
            "STORE_CHANGE": lambda: client.store("1", next(toggle), "\\Flagged"),
            "APPEND_200B": lambda: client.append("INBOX", None, None, small),
            "APPEND_4KB": lambda: client.append("INBOX", None, None, medium),
            "APPEND_1MB": lambda: client.append("INBOX", None, None, large),
            "SEARCH": lambda: client.search(None, "UNSEEN"),
        }
        for name in _SINGLE:
            if name == "FETCH_BODY_1MB":
                _status, data = client.select("INBOX")
                large_seq[0] = int(data[0] or b"1")
            call = calls[name]
            times = []
            for _ in range(max(2, samples // 5) if name == "APPEND_1MB" else samples):
                start = time.perf_counter()
                status, reply = call()
                times.append(time.perf_counter() - start)
                if status != "OK":
                    raise RuntimeError(f"{name} failed: {reply!r}")
            out[name] = {
                "p50_ms": round(statistics.median(times) * 1000, 3),
                "p99_ms": round(percentile(times, 0.99) * 1000, 3),
            }
    finally:
        client.logout()
    return out


# ---- the run ------------------------------------------------------------------------------
def _loadavg() -> str:
    try:
        return " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else 0.0


def _ratio(mine: float, theirs: float) -> float:
    return round(mine / theirs, 3) if theirs else 0.0


def _order(round_index: int) -> tuple[str, ...]:
    return SERVERS if round_index % 2 == 0 else SERVERS[::-1]


def run_compare(opts: CompareOptions) -> int:
    reason = dovecot.available()
    if reason is not None:
        print(f"mailha bench compare: {reason}", file=sys.stderr)
        return 2
    users = [f"{PREFIX}{u}" for u in range(opts.users)] + [SOLO]
    dove = dovecot.DovecotStack()
    mine = SpawnedStack(workers=opts.mailha_workers)
    try:
        dove.start(dict.fromkeys(users, PASSWORD))
        mine.start()
        with StoreClient(mine.store_address) as store:
            for user in users:
                store.create_user(user, PASSWORD)
        ports = {"dovecot": dove.imap_port, "mailha": mine.port}
        cpu: dict[str, CpuProbe] = {"dovecot": dove.cpu_snapshot, "mailha": mine.cpu_snapshot}
        for name in SERVERS:
            trio.run(_seed, ports[name], users)
        result = _measure(opts, ports, cpu)
    finally:
        mine.stop()
        dove.stop()
    _emit(opts, result)
    if opts.only_single:
        return 0  # a failed command raised
    ok = all(result["mixed"][s]["sessions"] for s in SERVERS)  # type: ignore[index]
    return 0 if ok else 1


def _measure(opts: CompareOptions, ports: dict[str, int], cpu: dict[str, CpuProbe]) -> dict[str, object]:
    mixed: dict[str, list[dict[str, object]]] = {s: [] for s in SERVERS}
    think: dict[str, list[dict[str, object]]] = {s: [] for s in SERVERS}
    single: dict[str, list[dict[str, dict[str, float]]]] = {s: [] for s in SERVERS}
    for r in range(opts.rounds):
        for name in () if opts.only_single else _order(r):
            mixed[name].append(_run_load(_load_options(opts, ports[name], think=False), cpu[name]))
        for name in _order(r):
            single[name].append(_single_session(ports[name], opts.samples))
        for name in () if opts.only_single else _order(r):
            think[name].append(_run_load(_load_options(opts, ports[name], think=True), cpu[name]))
    if opts.only_single:
        return _summarize_single(opts, single)
    return _summarize(opts, mixed, single, think)


def _summarize_single(opts: CompareOptions, single: dict[str, list[dict[str, dict[str, float]]]]) -> dict[str, object]:
    """`--only single`: the single-session figures of `_summarize`, same keys, nothing else."""
    out: dict[str, object] = {"options": {k: str(v) for k, v in dataclasses.asdict(opts).items()}}
    summary = {
        s: {
            f"{cmd.lower()}_{q}": _median([run[cmd][q] for run in single[s]])
            for cmd in _SINGLE
            for q in ("p50_ms", "p99_ms")
        }
        for s in SERVERS
    }
    out["summary"] = summary
    out["single"] = single
    out["loadavg"] = _loadavg()
    for key in summary["mailha"]:
        out[f"{key.removesuffix('_ms')}_ratio"] = _ratio(summary["mailha"][key], summary["dovecot"][key])
    return out


def _num(run: dict[str, object], key: str) -> float:
    value = run[key]
    assert isinstance(value, (int, float))
    return float(value)


def _failed(run: dict[str, object]) -> float:
    failures = run["failed_commands"]
    assert isinstance(failures, dict)
    return float(sum(failures.values()))


def _summarize(
    opts: CompareOptions,
    mixed: dict[str, list[dict[str, object]]],
    single: dict[str, list[dict[str, dict[str, float]]]],
    think: dict[str, list[dict[str, object]]],
) -> dict[str, object]:
    out: dict[str, object] = {"options": {k: str(v) for k, v in dataclasses.asdict(opts).items()}}
    summary: dict[str, dict[str, float]] = {}
    for s in SERVERS:
        summary[s] = {
            "sessions_per_s": _median([_num(r, "sessions_per_s") for r in mixed[s]]),
            "mixed_p99_ms": _median([_num(r, "p99_ms") for r in mixed[s]]),
            "server_cpu_ms_per_session": _median([_num(r, "server_cpu_ms_per_session") for r in mixed[s]]),
            "client_cpu_ms_per_session": _median([_num(r, "client_cpu_ms_per_session") for r in mixed[s]]),
            "think_p99_ms": _median([_num(r, "p99_ms") for r in think[s]]),
            "think_errors": sum(_num(r, "errors") for r in think[s]),
            "mixed_errors": sum(_num(r, "errors") for r in mixed[s]),
            "failed_commands": sum(_failed(r) for r in mixed[s] + think[s]),
        }
        for cmd in _SINGLE:
            for q in ("p50_ms", "p99_ms"):
                summary[s][f"{cmd.lower()}_{q}"] = _median([run[cmd][q] for run in single[s]])
    out["summary"] = summary
    # Mixed load, median over rounds, per server process (Dovecot's ended session processes: "exited").
    out["server_cpu_ms_per_session_by_process"] = {s: _by_process(mixed[s]) for s in SERVERS}
    # Which command kinds make the mixed load's p99 (median over rounds of each kind's p50/p99).
    out["mixed_by_command"] = {s: _by_command(mixed[s]) for s in SERVERS}
    out["mixed"] = {s: mixed[s][-1] | {"rounds": [_num(r, "sessions_per_s") for r in mixed[s]]} for s in SERVERS}
    # Each round's p99 too: the bar is "below 100 ms in every run", not the median.
    # With each round's load average and major faults: a slow round on a busy machine or a
    # faulting server process tells itself apart from a slow server.
    out["think"] = {
        s: think[s][-1]
        | {
            "rounds_p99_ms": [_num(r, "p99_ms") for r in think[s]],
            "rounds_loadavg": [r["loadavg"] for r in think[s]],
            "rounds_major_faults": [r["server_major_faults_by_process"] for r in think[s]],
        }
        for s in SERVERS
    }
    out["single"] = single
    mh, dc = summary["mailha"], summary["dovecot"]
    for key in mh:
        if key.endswith("_errors") or key == "failed_commands":
            continue
        out[f"{key.removesuffix('_ms')}_ratio"] = _ratio(mh[key], dc[key])
    return out


def _by_process(runs: list[dict[str, object]]) -> dict[str, float]:
    per_run: list[dict[str, float]] = []
    for run in runs:
        split = run["server_cpu_ms_per_session_by_process"]
        assert isinstance(split, dict)
        per_run.append(split)
    names = sorted({name for split in per_run for name in split})
    return {name: _median([split.get(name, 0.0) for split in per_run]) for name in names}


def _by_command(runs: list[dict[str, object]]) -> dict[str, dict[str, float]]:
    per_run: list[dict[str, dict[str, float]]] = []
    for run in runs:
        commands = run["commands"]
        assert isinstance(commands, dict)
        per_run.append(commands)
    names = sorted({name for commands in per_run for name in commands})
    return {
        name: {
            q: _median([float(commands[name][q]) for commands in per_run if name in commands])
            for q in ("p50_ms", "p99_ms")
        }
        for name in names
    }


def _emit(opts: CompareOptions, result: dict[str, object]) -> None:
    if opts.output is not None:
        opts.output.parent.mkdir(parents=True, exist_ok=True)
        opts.output.write_text(json.dumps(result, indent=2) + "\n")
    if opts.json_output:
        print(json.dumps(result))
        sys.stdout.flush()
        return
    summary = result["summary"]
    assert isinstance(summary, dict)
    dc, mh = summary["dovecot"], summary["mailha"]
    print(f"{'figure':32} {'dovecot':>10} {'mailha':>10} {'ratio':>7}   (ratio = mailha / dovecot)")
    for key in dc:
        if key.endswith("_errors") or key == "failed_commands":
            continue
        print(f"{key:32} {dc[key]:10.3f} {mh[key]:10.3f} {_ratio(mh[key], dc[key]):7.2f}")
    if opts.only_single:
        print(f"load average at the end: {result['loadavg']}")
        sys.stdout.flush()
        return
    by_process = result["server_cpu_ms_per_session_by_process"]
    assert isinstance(by_process, dict)
    for name in SERVERS:
        split = ", ".join(f"{proc} {ms:.2f}" for proc, ms in by_process[name].items())
        print(f"{name}: server CPU ms per session (mixed load) by process: {split}")
    by_command = result["mixed_by_command"]
    assert isinstance(by_command, dict)
    print("mixed load per command, p50 / p99 ms (median of rounds):")
    for cmd in sorted(set(by_command["dovecot"]) | set(by_command["mailha"])):
        cells = []
        for name in SERVERS:
            kind = by_command[name].get(cmd, {"p50_ms": 0.0, "p99_ms": 0.0})
            cells.append(f" {name} {kind['p50_ms']:8.2f} / {kind['p99_ms']:8.2f}")
        print(f"  {cmd:16}" + "".join(cells))
    for name, row in (("dovecot", dc), ("mailha", mh)):
        print(
            f"{name}: connection errors {row['mixed_errors'] + row['think_errors']:.0f}, "
            f"failed commands {row['failed_commands']:.0f}"
        )
    sys.stdout.flush()
