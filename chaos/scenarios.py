"""The named chaos scenarios and the policies some of them check on top of the checker.

A scenario is a fault, how many times to inject it (bounded), how long to
let the workload run between injections, what the workload carries, and
which extra policy holds. `make chaos` runs them all; the `smoke` list is
the subset `make test` runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chaos import nemesis
from chaos.checker import Violation
from chaos.history import WRITES, EventType, Op, pair
from chaos.history import Event as HistoryEvent
from nodeconf.config import MIB

Policy = Callable[[Sequence[HistoryEvent], float], list[Violation]]


def no_writes_without_quorum(events: Sequence[HistoryEvent], session_timeout: float) -> list[Violation]:
    """No write is acknowledged while ZooKeeper has no quorum (after the active had
    `session_timeout` to notice); writes are acknowledged again after quorum is back.

    The window ends when the nemesis begins restarting members ("restoring"): quorum
    may return as soon as the first of them serves."""
    ops = pair(events)
    windows: list[tuple[float, float, int]] = []
    inject_at: float | None = None
    inject_ev = -1
    for op in sorted(ops, key=lambda o: o.start):
        if op.f is not Op.NEMESIS or op.invoke.str_("fault") != "zk-quorum-loss":
            continue
        if op.invoke.str_("phase") == "inject" and op.outcome is EventType.OK and op.complete is not None:
            inject_at, inject_ev = op.complete.time, op.complete.index
        elif op.invoke.str_("phase") in ("restoring", "heal") and inject_at is not None:
            windows.append((inject_at, op.start, inject_ev))
            inject_at = None
    violations: list[Violation] = []
    writes = [op for op in ops if op.f in WRITES and op.outcome is EventType.OK]
    for start, end, ev in windows:
        fenced_from = start + session_timeout
        for op in writes:
            if op.start > fenced_from and op.end < end:
                violations.append(
                    Violation(
                        "write-without-quorum",
                        f"{op.invoke.str_('chaos_id')} acknowledged at {op.end:.2f} s while ZooKeeper had no quorum "
                        f"({start:.2f}-{end:.2f} s)",
                        (ev, op.invoke.index, op.event().index),
                    )
                )
    return violations + recovers(events, session_timeout)


def recovers(events: Sequence[HistoryEvent], session_timeout: float) -> list[Violation]:
    """After the last heal, some client write is acknowledged again (the service came back)."""
    ops = pair(events)
    heals = [op.start for op in ops if op.f is Op.NEMESIS and op.invoke.str_("phase") == "heal"]
    if not heals:
        return []
    last = max(heals)
    if any(op.f in WRITES and op.outcome is EventType.OK and op.end > last for op in ops):
        return []
    return [Violation("no-recovery", f"no write was acknowledged after the last heal at {last:.2f} s")]


def no_failover(events: Sequence[HistoryEvent], session_timeout: float) -> list[Violation]:
    """A pause shorter than the session timeout must not move the service."""
    ops = pair(events)
    epochs = sorted(
        (op.end, e, op.event().index)
        for op in ops
        if op.f is Op.EPOCH and op.outcome is EventType.OK and (e := op.event().int_("epoch")) is not None
    )
    for (_, a, ia), (_, b, ib) in itertools.pairwise(epochs):
        if b > a:
            rose = Violation("unexpected-failover", f"the writer epoch rose from {a} to {b}", (ia, ib))
            return [rose, *recovers(events, session_timeout)]
    return recovers(events, session_timeout)


def no_stale_readers(events: Sequence[HistoryEvent], session_timeout: float) -> list[Violation]:
    """A killed reader's LMDB slot is reclaimed within the nemesis' grace period."""
    probes = [
        op
        for op in pair(events)
        if op.f is Op.NEMESIS and op.invoke.str_("phase") == "probe" and (op.invoke.int_("stale_readers") or 0) > 0
    ]
    found: list[Violation] = []
    if probes:
        worst = max(probes, key=lambda op: op.invoke.int_("stale_readers") or 0)
        found.append(
            Violation(
                "stale-reader",
                f"{len(probes)} probe(s) found reader slots of dead processes still held, up to "
                f"{worst.invoke.int_('stale_readers')} (pids {worst.invoke.list_('pids')[:5]}): they pin old "
                "snapshots, so LMDB cannot reuse freed pages",
                (worst.invoke.index,),
            )
        )
    return found + recovers(events, session_timeout)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    fault: Callable[[nemesis.NemesisContext], None]
    rounds: int  # upper bound on injections
    gap: float  # seconds of plain workload between injections
    policy: Policy = recovers
    big_append_bytes: int = 0
    clients: int = 4
    faults_per_round: int = 1  # flapping injects several faults per round
    standalone: bool = False  # runs on its own standalone node (chaos.storage_full), not the cluster
    mta_retry: bool = False  # LMTP clients retry like an MTA (and deliver more often)

    @property
    def max_faults(self) -> int:
        return self.rounds * self.faults_per_round

    def run_fault(self, ctx: nemesis.NemesisContext) -> None:
        self.fault(ctx)


def _own_node(ctx: nemesis.NemesisContext) -> None:
    raise nemesis.NemesisError("this scenario runs on its own node: chaos.storage_full")


def _all() -> list[Scenario]:
    S = Scenario
    return [
        S("kill-node", "kill -9 of every process of the active node", nemesis.kill_active_node, 6, 3.0),
        S("kill-agent", "kill -9 of the active node's agent only", nemesis.kill_agent, 6, 3.0),
        S(
            "kill-node-mta-retry",
            "kill -9 of the active node while MTA-like LMTP clients retry every delivery whose reply they "
            "did not see (exactly once: no duplicate, nothing lost)",
            nemesis.kill_active_node,
            6,
            3.0,
            mta_retry=True,
        ),
        S(
            "pause-long",
            "SIGSTOP of the active node for 6 s (> session timeout), then SIGCONT",
            nemesis.pause_active(6.0),
            5,
            3.0,
        ),
        S(
            "pause-short",
            "SIGSTOP of the active node for 0.5 s (no failover expected)",
            nemesis.pause_active(0.5),
            30,
            1.0,
            policy=no_failover,
        ),
        S(
            "partition-zookeeper",
            "the active node cut off from ZooKeeper only",
            nemesis.partition_active("zookeeper", 8.0),
            5,
            3.0,
        ),
        S(
            "partition-clients",
            "the active node cut off from clients only",
            nemesis.partition_active("clients", 6.0),
            5,
            3.0,
        ),
        S(
            "partition-full",
            "full isolation of the active node, then heal",
            nemesis.partition_active("full", 8.0),
            5,
            3.0,
        ),
        S("zk-kill-leader", "kill -9 of the ZooKeeper leader", nemesis.kill_zk_leader(3.0), 8, 3.0),
        S(
            "zk-quorum-loss",
            "two of three ZooKeeper members killed, then restored (no writes without quorum)",
            nemesis.zk_quorum_loss(10.0),
            4,
            4.0,
            policy=no_writes_without_quorum,
        ),
        S(
            "partition-flap",
            "full isolation of the active flapping every 3 s",
            nemesis.flapping_partition(5, 3.0),
            2,
            4.0,
            faults_per_round=5,
        ),
        S("switchover", "repeated planned switchovers", nemesis.switchover, 12, 2.0),
        S(
            "kill-imapd-big-append",
            "kill -9 of imapd in the middle of a 20 MiB APPEND (just under the 20 MiB limit)",
            nemesis.kill_frontend_mid_big_append(4 * MIB),
            6,
            2.0,
            big_append_bytes=20 * MIB - 8 * 1024,
        ),
        S(
            "kill-reader",
            "kill -9 of a process holding an LMDB read transaction",
            nemesis.kill_reader(2.0),
            20,
            1.0,
            policy=no_stale_readers,
        ),
        S(
            "storage-full",
            "storage full: a 128 MiB tmpfs filled by a ballast file, then freed (own node)",
            _own_node,
            4,
            4.0,
            standalone=True,
        ),
    ]


SCENARIOS: dict[str, Scenario] = {s.name: s for s in _all()}
# `make test`: a few minutes covering a crash, a partition and a planned move.
SMOKE = ("kill-node", "partition-zookeeper", "switchover", "pause-short", "kill-node-mta-retry")
