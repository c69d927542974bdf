"""Where imaplib's wall time goes in `UID FETCH 1:* (FLAGS)` of a large INBOX (issue 17).

    python -m bench.flags_probe [--size 50000] [--rounds 8] [--imapd-tree NAME=PATH ...]

Fills one INBOX of `--size` messages in a throwaway mailha and a throwaway Dovecot once
(as `mailha bench compare --mailbox-size` does: the same corpus, mailha over one LMTP
connection, Dovecot by the hybrid fill; no full-text index, which this FETCH never reads),
marks both mostly \\Seen, records mailha's reply and starts a floor: a trivial local server
that answers the same FETCH with those bytes, complete, in one sendmsg (nothing but imaplib
and the kernel is timed against it). Then, round after round, the targets in turn (the
order turned every round): a fresh imaplib connection, LOGIN, SELECT, and the timed
`uid("FETCH", "1:*", "(FLAGS)")`, as bench/mailbox_measure.py times it. Each timed call is
taken apart from the client's side:

- client CPU user/sys (getrusage of the thread) and on-CPU time (/proc/thread-self/schedstat);
- run-queue wait: runnable but not running (someone else had the client's CPU);
- blocked: wall - on-CPU - run-queue wait (waiting for bytes);
- the reads imaplib's BufferedReader made of the socket, their bytes, and the first byte's time;
- the client's voluntary/involuntary context switches and its garbage collections;
- the server's CPU and wake-ups during the call: schedstat of every thread of the process
  that serves the session (mailha's imapd; Dovecot's imap process, found by the connection
  it holds). mailha's store is left out: with local reads it takes no part in this FETCH,
  and its background wake-ups were mixed with imapd's in a first run.

`--imapd-tree NAME=PATH` adds a mailha imapd run from PATH (its modules, this interpreter)
on the same store: an older tree and a changed one, timed on one fill.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import imaplib
import io
import json
import os
import pathlib
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Final

from bench import dovecot
from bench.dovecot_fill import fill_dovecot
from bench.large_mailbox import PASSWORD, RCPT, USER, mailha_under_test
from bench.lmtp_fill import Endpoint, WireCorpus, fill_range
from bench.mailbox_compare import loadavg
from bench.mailbox_measure import ImapTarget, mark_mostly_seen
from bench.noop_affinity import _holders, _threads
from lmtpd.local_servers import free_port, stop, wait_for_port
from nodeconf.services import service_env

COMMAND: Final = "UID FETCH 1:* (FLAGS)"
FLOOR: Final = "floor"


@dataclass(frozen=True)
class SchedStat:
    """/proc/.../schedstat: ns on a CPU, ns runnable but waiting for one, times put on a CPU."""

    cpu_ns: int
    wait_ns: int
    slices: int


def parse_schedstat(text: str) -> SchedStat:
    cpu, wait, slices = (int(f) for f in text.split()[:3])
    return SchedStat(cpu, wait, slices)


def _own_schedstat() -> SchedStat:
    return parse_schedstat(pathlib.Path("/proc/thread-self/schedstat").read_text())


@dataclass(frozen=True)
class ClientSnapshot:
    at: float  # perf_counter, s
    sched: SchedStat
    user_s: float
    sys_s: float
    voluntary: int
    involuntary: int


def client_snapshot() -> ClientSnapshot:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    sched = _own_schedstat()
    return ClientSnapshot(time.perf_counter(), sched, usage.ru_utime, usage.ru_stime, usage.ru_nvcsw, usage.ru_nivcsw)


@dataclass(frozen=True)
class Sample:
    """One timed FETCH, in ms unless named otherwise."""

    wall_ms: float
    user_ms: float
    sys_ms: float
    oncpu_ms: float
    runq_ms: float
    blocked_ms: float  # wall - on CPU - run-queue wait: waiting for bytes
    first_byte_ms: float
    recvs: int
    bytes: int
    voluntary: int
    involuntary: int
    gc_ms: float
    gc_runs: int
    server_cpu_ms: float
    server_wakeups: int
    select_ms: float
    # Of server_wakeups, those of the serving process's main thread (imapd's trio loop; Dovecot's
    # imap process has no other): the rest are its helper threads (gRPC's, trio's workers).
    server_main_wakeups: int = 0
    # Of those, the main thread's voluntary switches (it blocked: waiting for the socket, a
    # timer, a helper) and involuntary ones (preempted while runnable), from /proc/.../status.
    server_main_voluntary: int = 0
    server_main_involuntary: int = 0


def decompose(
    before: ClientSnapshot,
    after: ClientSnapshot,
    *,
    first_byte_at: float | None,
    recvs: int,
    nbytes: int,
    gc_s: float,
    gc_runs: int,
    server_cpu_ns: int,
    server_wakeups: int,
    select_ms: float,
) -> Sample:
    wall = after.at - before.at
    oncpu = (after.sched.cpu_ns - before.sched.cpu_ns) / 1e9
    runq = (after.sched.wait_ns - before.sched.wait_ns) / 1e9

    def ms(seconds: float) -> float:
        return round(seconds * 1000, 3)

    return Sample(
        wall_ms=ms(wall),
        user_ms=ms(after.user_s - before.user_s),
        sys_ms=ms(after.sys_s - before.sys_s),
        oncpu_ms=ms(oncpu),
        runq_ms=ms(runq),
        blocked_ms=ms(wall - oncpu - runq),
        first_byte_ms=ms(first_byte_at - before.at) if first_byte_at is not None else -1.0,
        recvs=recvs,
        bytes=nbytes,
        voluntary=after.voluntary - before.voluntary,
        involuntary=after.involuntary - before.involuntary,
        gc_ms=ms(gc_s),
        gc_runs=gc_runs,
        server_cpu_ms=round(server_cpu_ns / 1e6, 3),
        server_wakeups=server_wakeups,
        select_ms=round(select_ms, 3),
    )


class CountingSocketReader(io.RawIOBase):
    """The raw stream under imaplib's BufferedReader, counting its reads of the socket."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self.reset()

    def reset(self) -> None:
        self.recvs = 0
        self.nbytes = 0
        self.first_at: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        n = self._sock.recv_into(buffer)
        self.recvs += 1
        self.nbytes += n
        if n and self.first_at is None:
            self.first_at = time.perf_counter()
        return n


class GcTimer:
    """Time spent in the client's garbage collections while `armed`."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.runs = 0
        self._started = 0.0
        self.armed = False

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if not self.armed:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.runs += 1


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    pids: Callable[[int], list[int]]  # the server's processes, given the client's local port


def measure_once(target: Target, gc_timer: GcTimer) -> Sample:
    imap = imaplib.IMAP4("127.0.0.1", target.port)
    try:
        # imaplib has read the greeting (and CAPABILITY): nothing is buffered; same buffer size.
        reader = CountingSocketReader(imap.sock)
        imap.file = io.BufferedReader(reader, io.DEFAULT_BUFFER_SIZE)
        if imap.login(USER, PASSWORD)[0] != "OK":
            raise RuntimeError(f"{target.name}: login failed")
        started = time.perf_counter()
        if imap.select("INBOX")[0] != "OK":
            raise RuntimeError(f"{target.name}: SELECT failed")
        select_ms = (time.perf_counter() - started) * 1000
        pids = target.pids(imap.sock.getsockname()[1])
        server_before = _threads(pids)
        switches_before = _switches(pids)
        reader.reset()
        gc_timer.seconds, gc_timer.runs, gc_timer.armed = 0.0, 0, True
        before = client_snapshot()
        typ, data = imap.uid("FETCH", "1:*", "(FLAGS)")
        after = client_snapshot()
        gc_timer.armed = False
        server_after = _threads(pids)
        switches_after = _switches(pids)
        if typ != "OK" or not data:
            raise RuntimeError(f"{target.name}: FETCH failed: {typ}")
        common = [t for t in server_after if t in server_before]
        main_wakeups = sum(server_after[t].slices - server_before[t].slices for t in common if t in pids)
        sample = decompose(
            before,
            after,
            first_byte_at=reader.first_at,
            recvs=reader.recvs,
            nbytes=reader.nbytes,
            gc_s=gc_timer.seconds,
            gc_runs=gc_timer.runs,
            server_cpu_ns=sum(server_after[t].cpu_ns - server_before[t].cpu_ns for t in common),
            server_wakeups=sum(server_after[t].slices - server_before[t].slices for t in common),
            select_ms=select_ms,
        )
        return replace(
            sample,
            server_main_wakeups=main_wakeups,
            server_main_voluntary=switches_after[0] - switches_before[0],
            server_main_involuntary=switches_after[1] - switches_before[1],
        )
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            imap.logout()


def _switches(pids: Sequence[int]) -> tuple[int, int]:
    """Voluntary and involuntary context switches of the processes' main threads so far."""
    voluntary = involuntary = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in pathlib.Path(f"/proc/{pid}/task/{pid}/status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    voluntary += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    involuntary += int(line.split()[1])
    return voluntary, involuntary


def floor_answer(line: bytes, fetch_reply: bytes, exists: int) -> tuple[list[bytes], bool]:
    """The floor server's whole answer to one command line (parts, sent in order: the recorded
    reply is never copied), and whether to close after it."""
    tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
    verb = rest.split(b" ", 1)[0].upper()
    if verb == b"LOGOUT":
        return [b"* BYE\r\n" + tag + b" OK LOGOUT completed\r\n"], True
    if verb == b"SELECT":
        return [b"* %d EXISTS\r\n* FLAGS (\\Seen)\r\n%s OK [READ-WRITE] SELECT completed\r\n" % (exists, tag)], False
    if verb == b"UID" and rest.upper().startswith(b"UID FETCH"):
        return [fetch_reply, tag + b" OK FETCH completed\r\n"], False
    if verb == b"CAPABILITY":
        return [b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK CAPABILITY completed\r\n"], False
    return [tag + b" OK done\r\n"], False


def send_parts(conn: socket.socket, parts: list[bytes]) -> None:
    """`parts` in order with sendmsg (blocking), resumed after a partial send."""
    views = [memoryview(p) for p in parts if p]
    while views:
        sent = conn.sendmsg(views)
        while views and sent >= len(views[0]):
            sent -= len(views.pop(0))
        if sent:
            views[0] = views[0][sent:]


def serve_floor(reply_path: pathlib.Path, exists: int) -> None:
    """Answer connections one at a time, the FETCH reply complete in one sendmsg, until killed."""
    reply = reply_path.read_bytes()
    with socket.create_server(("127.0.0.1", 0)) as server:
        print(server.getsockname()[1], flush=True)
        while True:
            conn, _ = server.accept()
            with conn, conn.makefile("rb") as lines:
                conn.sendall(b"* OK [CAPABILITY IMAP4rev1] floor ready\r\n")
                for line in lines:
                    answer, close = floor_answer(line, reply, exists)
                    send_parts(conn, answer)
                    if close:
                        break


def record_reply(port: int) -> tuple[bytes, int]:
    """The untagged part of the FETCH reply as the server sent it, and EXISTS."""
    imap = imaplib.IMAP4("127.0.0.1", port)
    try:
        imap.login(USER, PASSWORD)
        exists = int(imap.select("INBOX")[1][0] or 0)
    finally:
        imap.logout()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock, sock.makefile("rb") as f:
        f.readline()
        for line in (f"a LOGIN {USER} {PASSWORD}", "b SELECT INBOX", f"c {COMMAND}"):
            sock.sendall(line.encode() + b"\r\n")
            tag = line[:2].encode()
            out = bytearray()
            while not (got := f.readline()).startswith(tag):
                out += got
        sock.sendall(b"z LOGOUT\r\n")
    return bytes(out), exists


@contextlib.contextmanager
def floor_server(reply: bytes, exists: int) -> Iterator[subprocess.Popen[bytes]]:
    with tempfile.NamedTemporaryFile(prefix="flags-probe-") as f:
        f.write(reply)
        f.flush()
        argv = [sys.executable, "-m", "bench.flags_probe", "--floor", f.name, str(exists)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            proc.port = int(proc.stdout.readline())  # type: ignore[attr-defined]
            yield proc
        finally:
            stop(proc)


@contextlib.contextmanager
def imapd_from(
    tree: pathlib.Path, log: pathlib.Path, store: str, epoch: int, data: pathlib.Path
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A mailha imapd from `tree`'s modules (this interpreter, run in `tree`) on the probe's store."""
    port = free_port()
    argv = [sys.executable, "-m", "mailha.cli", "imapd", "serve", "--store", store, "--epoch", str(epoch)]
    argv += ["--listen", f"127.0.0.1:{port}", "--allow-plaintext-login", "--store-data", str(data)]
    env = service_env("imapd") | {"PYTHONPATH": str(tree)}
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tree)
    try:
        wait_for_port(port, proc)
        yield port, proc
    finally:
        stop(proc)


def _fixed(pids: list[int]) -> Callable[[int], list[int]]:
    return lambda _client_port: pids


def summarize(samples: dict[str, list[Sample]]) -> dict[str, dict[str, float]]:
    """Per target, the median of every field over its samples."""
    out: dict[str, dict[str, float]] = {}
    for name, runs in samples.items():
        rows = [asdict(s) for s in runs]
        out[name] = {k: round(statistics.median(float(r[k]) for r in rows), 3) for k in rows[0]} if rows else {}
    return out


def turned(names: Sequence[str], round_index: int) -> list[str]:
    """The targets' order in a round: turned by one each round (each goes first in turn)."""
    k = round_index % len(names) if names else 0
    return [*names[k:], *names[:k]]


def run(size: int, rounds: int, trees: dict[str, pathlib.Path], seed: int = 1) -> dict[str, object]:
    reason = dovecot.available()
    if reason is not None:
        raise dovecot.DovecotUnavailable(reason)
    result: dict[str, object] = {"size": size, "rounds": rounds}
    with tempfile.TemporaryDirectory(prefix="mailha-flags-probe-") as tmp, contextlib.ExitStack() as stack:
        os.chmod(tmp, 0o755)
        root = pathlib.Path(tmp)
        corpus = WireCorpus.build(root, size, seed)
        stack.callback(corpus.close)
        dove = dovecot.DovecotStack(directory=root / "dovecot")
        dove.directory.mkdir()
        mailha = stack.enter_context(mailha_under_test(root / "mailha", fulltext=False))
        stack.callback(dove.stop)
        dove.start({USER: PASSWORD})
        started = time.perf_counter()
        fill_range(Endpoint("127.0.0.1", mailha.lmtp_port, RCPT), corpus, 0, size)
        fill_dovecot(dove, corpus, USER, RCPT)
        result["fill_seconds"] = round(time.perf_counter() - started, 1)
        dove_target = ImapTarget("127.0.0.1", dove.imap_port, USER, PASSWORD)
        for target in (mailha.target, dove_target):
            mark_mostly_seen(target)
        reply, exists = record_reply(mailha.target.port)
        dove_reply, _ = record_reply(dove.imap_port)
        result["reply_bytes"] = {"mailha": len(reply), "dovecot": len(dove_reply)}
        result["replies_identical"] = reply == dove_reply
        floor = stack.enter_context(floor_server(reply, exists))
        targets = [
            Target(FLOOR, floor.port, _fixed([floor.pid])),  # type: ignore[attr-defined]
            Target("dovecot", dove.imap_port, lambda p: sorted(_holders(dove.imap_port, p))),
            Target("mailha", mailha.target.port, _fixed([mailha.imapd_pid])),
        ]
        for name, tree in trees.items():
            port, proc = stack.enter_context(
                imapd_from(tree, root / f"imapd-{name}.log", mailha.store_addr, mailha.epoch, root / "mailha" / "store")
            )
            targets.append(Target(name, port, _fixed([proc.pid])))
        gc_timer = GcTimer()
        gc.callbacks.append(gc_timer)
        samples: dict[str, list[Sample]] = {t.name: [] for t in targets}
        by_name = {t.name: t for t in targets}
        loads = []
        for r in range(rounds + 1):  # round 0 warms every server's caches and is not kept
            for name in turned(list(by_name), r):
                one = measure_once(by_name[name], gc_timer)
                if r:
                    samples[name].append(one)
                    print(json.dumps({"round": r, "target": name} | asdict(one)), file=sys.stderr, flush=True)
            loads.append(loadavg())
        gc.callbacks.remove(gc_timer)
    result["samples"] = {k: [asdict(s) for s in v] for k, v in samples.items()}
    result["summary"] = summarize(samples)
    result["loadavg_per_round"] = loads
    return result


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--floor"]:
        serve_floor(pathlib.Path(args_in[1]), int(args_in[2]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.flags_probe", description=__doc__.split("\n\n")[1])
    parser.add_argument("--size", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--imapd-tree", action="append", default=[], metavar="NAME=PATH")
    args = parser.parse_args(args_in)
    trees = {}
    for spec in args.imapd_tree:
        name, _, path = spec.partition("=")
        if not path or name in (FLOOR, "dovecot", "mailha"):
            parser.error(f"--imapd-tree {spec}: want NAME=PATH, NAME not floor/dovecot/mailha")
        trees[name] = pathlib.Path(path).resolve()
    print(json.dumps(run(args.size, args.rounds, trees), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
