"""Nemesis faults against a fake cluster: every fault heals, also when interrupted or failing,
and records inject/heal; the scenario policies on synthetic histories."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from chaos import nemesis
from chaos.checker import check
from chaos.history import Event, EventType, HistoryWriter, JsonValue, Op, pair
from chaos.scenarios import SCENARIOS, SMOKE, no_failover, no_stale_readers, no_writes_without_quorum, recovers


@dataclass
class FakeCluster:
    active: str | None = "node1"
    calls: list[tuple[object, ...]] = field(default_factory=list)
    partitioned: set[str] = field(default_factory=set)
    stopped_pids: set[int] = field(default_factory=set)
    zk_down: set[int] = field(default_factory=set)
    fail_partition: bool = False
    fail_zk_stop_of: int | None = None

    def active_node(self) -> str | None:
        return self.active

    def node_pids(self, node: str) -> list[int]:
        return [10, 11, 12] if node == "node1" else [20, 21, 22]

    def service_pids(self, node: str, service: str) -> list[int]:
        return {"agent": [10], "imapd": [12]}.get(service, [])[:1] if node == "node1" else [20]

    def kill(self, pids: Iterable[int], sig: signal.Signals) -> int:
        pids = list(pids)
        self.calls.append(("kill", tuple(pids), sig))
        if sig is signal.SIGSTOP:
            self.stopped_pids |= set(pids)
        elif sig is signal.SIGCONT:
            self.stopped_pids -= set(pids)
        elif sig is signal.SIGKILL and 10 in pids:
            self.active = "node2"
        return len(pids)

    def partition(self, node: str, kind: str) -> None:
        self.partitioned.add(node)
        self.calls.append(("partition", node, kind))
        if self.fail_partition:
            raise RuntimeError("nft said no")

    def heal_partition(self, node: str) -> None:
        self.partitioned.discard(node)
        self.calls.append(("heal", node))

    def zk_leader(self) -> int | None:
        return 2

    def zk_members(self) -> list[int]:
        return [1, 2, 3]

    def zk_stop(self, member_id: int) -> None:
        if member_id == self.fail_zk_stop_of:
            raise RuntimeError("cannot stop")
        self.zk_down.add(member_id)

    def zk_start(self, member_id: int) -> None:
        self.zk_down.discard(member_id)

    def restore_nodes(self) -> None:
        self.calls.append(("restore",))

    def switchover(self) -> None:
        self.active = "node2" if self.active == "node1" else "node1"

    def wait_active(self, timeout: float, other_than: str | None = None) -> str | None:
        return self.active if self.active != other_than else None

    def session_timeout(self) -> float:
        return 2.0


def _ctx(cluster: FakeCluster) -> nemesis.NemesisContext:
    return nemesis.NemesisContext(cluster, HistoryWriter())


def _nemesis_events(ctx: nemesis.NemesisContext) -> list[tuple[str | None, str | None, EventType]]:
    return [
        (op.invoke.str_("fault"), op.invoke.str_("phase"), op.outcome)
        for op in pair(ctx.history.events())
        if op.f is Op.NEMESIS
    ]


def test_kill_node_kills_every_process_and_restores_the_agents() -> None:
    cluster = FakeCluster()
    ctx = _ctx(cluster)
    nemesis.kill_active_node(ctx)
    assert ("kill", (10, 11, 12), signal.SIGKILL) in cluster.calls
    assert ("restore",) in cluster.calls
    assert _nemesis_events(ctx) == [("kill-node", "inject", EventType.OK), ("kill-node", "heal", EventType.OK)]
    assert check(ctx.history.events()).faults == 1


def test_kill_agent_kills_only_the_agent() -> None:
    cluster = FakeCluster()
    ctx = _ctx(cluster)
    nemesis.kill_agent(ctx)
    kills = [c for c in cluster.calls if c[0] == "kill"]
    assert kills == [("kill", (10,), signal.SIGKILL)]


def test_pause_is_always_continued_even_when_interrupted() -> None:
    cluster = FakeCluster()
    ctx = _ctx(cluster)
    ctx.stop.set()  # Ctrl-C before the pause ends: the sleep returns at once
    nemesis.pause_active(30.0)(ctx)
    assert cluster.stopped_pids == set()
    sigs = [c[2] for c in cluster.calls if c[0] == "kill"]
    assert sigs == [signal.SIGSTOP, signal.SIGCONT]
    assert _nemesis_events(ctx)[0] == ("pause-long", "inject", EventType.OK)


def test_short_pause_is_named_by_the_session_timeout() -> None:
    ctx = _ctx(FakeCluster())
    nemesis.pause_active(0.01)(ctx)
    assert _nemesis_events(ctx)[0][0] == "pause-short"


def test_failed_partition_is_healed_and_recorded_as_failed() -> None:
    cluster = FakeCluster(fail_partition=True)
    ctx = _ctx(cluster)
    with pytest.raises(RuntimeError, match="nft said no"):
        nemesis.partition_active("zookeeper", 5.0)(ctx)
    assert cluster.partitioned == set()
    assert _nemesis_events(ctx) == [("partition-zookeeper", "inject", EventType.FAIL)]
    assert check(ctx.history.events()).faults == 0


def test_partition_is_bounded_and_healed() -> None:
    cluster = FakeCluster()
    ctx = _ctx(cluster)
    timer = threading.Timer(0.05, ctx.stop.set)
    timer.start()
    nemesis.partition_active("full", 60.0)(ctx)  # ends early on stop
    timer.join()
    assert cluster.partitioned == set()
    assert ("partition", "node1", "full") in cluster.calls


def test_flapping_counts_each_flip_and_ends_healed() -> None:
    cluster = FakeCluster()
    ctx = _ctx(cluster)
    nemesis.flapping_partition(3, 0.01)(ctx)
    assert cluster.partitioned == set()
    assert check(ctx.history.events()).faults == 3


def test_quorum_loss_restarts_what_it_stopped_even_when_a_stop_fails() -> None:
    cluster = FakeCluster(fail_zk_stop_of=1)
    ctx = _ctx(cluster)
    with pytest.raises(RuntimeError):
        nemesis.zk_quorum_loss(5.0)(ctx)
    assert cluster.zk_down == set()
    cluster = FakeCluster()
    ctx = _ctx(cluster)
    nemesis.zk_quorum_loss(0.01)(ctx)
    assert cluster.zk_down == set()
    ops = [op for op in pair(ctx.history.events()) if op.f is Op.NEMESIS]
    assert ops[0].invoke.list_("members") == [2, 1]  # the leader first


def test_switchover_moves_the_service() -> None:
    cluster = FakeCluster()
    nemesis.switchover(_ctx(cluster))
    assert cluster.active == "node2"


def test_no_active_node_is_an_error() -> None:
    with pytest.raises(nemesis.NemesisError):
        nemesis.kill_active_node(_ctx(FakeCluster(active=None)))


def test_kill_imapd_waits_for_a_big_append_in_flight() -> None:
    cluster = FakeCluster()
    ctx = _ctx(cluster)
    with pytest.raises(nemesis.NemesisError, match="in flight"):
        nemesis.kill_frontend_mid_big_append(1000, wait=0.1)(ctx)
    ctx.history.invoke("imap-0", Op.APPEND, {"chaos_id": "x", "bytes": 5000})
    nemesis.kill_frontend_mid_big_append(1000, wait=2.0)(ctx)
    assert ("kill", (12,), signal.SIGKILL) in cluster.calls


def test_heal_everything_undoes_all_and_reports_problems() -> None:
    cluster = FakeCluster()
    cluster.partitioned = {"node1", "node2"}
    cluster.zk_down = {1, 3}
    assert nemesis.heal_everything(cluster, ["node1", "node2"]) == []
    assert not cluster.partitioned and not cluster.zk_down
    assert ("restore",) in cluster.calls


# ---------------------------------------------------------------------------
# Scenario policies


def _events(spec: list[tuple[float, float | None, EventType, Op, dict[str, JsonValue]]]) -> list[Event]:
    events: list[Event] = []
    for op_id, (start, end, outcome, f, value) in enumerate(spec):
        events.append(Event(len(events), start, start, "p", EventType.INVOKE, f, op_id, value))
        if end is not None:
            events.append(Event(len(events), end, end, "p", outcome, f, op_id, {}))
    return sorted(events, key=lambda e: e.time)


OK = EventType.OK


def _quorum(write_at: float) -> list[Event]:
    return _events(
        [
            (10.0, 10.1, OK, Op.NEMESIS, {"fault": "zk-quorum-loss", "phase": "inject"}),
            (write_at, write_at + 0.1, OK, Op.APPEND, {"chaos_id": "w", "mailbox": "m"}),
            (20.0, 20.0, OK, Op.NEMESIS, {"fault": "zk-quorum-loss", "phase": "heal"}),
            (21.0, 21.1, OK, Op.APPEND, {"chaos_id": "after", "mailbox": "m"}),
        ]
    )


def test_quorum_window_ends_when_restoring_begins() -> None:
    events = _events(
        [
            (10.0, 10.1, OK, Op.NEMESIS, {"fault": "zk-quorum-loss", "phase": "inject"}),
            (15.0, 15.0, OK, Op.NEMESIS, {"fault": "zk-quorum-loss", "phase": "restoring"}),
            (17.0, 17.1, OK, Op.APPEND, {"chaos_id": "w", "mailbox": "m"}),  # first member back
            (20.0, 20.0, OK, Op.NEMESIS, {"fault": "zk-quorum-loss", "phase": "heal"}),
            (21.0, 21.1, OK, Op.APPEND, {"chaos_id": "after", "mailbox": "m"}),
        ]
    )
    assert no_writes_without_quorum(events, 2.0) == []
    cluster = FakeCluster()
    ctx = _ctx(cluster)
    nemesis.zk_quorum_loss(0.01)(ctx)
    phases = [op.invoke.str_("phase") for op in pair(ctx.history.events()) if op.f is Op.NEMESIS]
    assert phases == ["inject", "restoring", "heal"]


def test_writes_inside_the_quorum_window_are_violations() -> None:
    assert no_writes_without_quorum(_quorum(11.0), 2.0) == []  # within the session timeout grace
    assert no_writes_without_quorum(_quorum(25.0), 2.0) == []  # after the heal
    bad = no_writes_without_quorum(_quorum(15.0), 2.0)
    assert [v.rule for v in bad] == ["write-without-quorum"]


def test_recovery_needs_an_acknowledged_write_after_the_last_heal() -> None:
    events = _events(
        [
            (1.0, 1.1, OK, Op.APPEND, {"chaos_id": "a", "mailbox": "m"}),
            (2.0, 2.0, OK, Op.NEMESIS, {"fault": "kill-node", "phase": "heal"}),
            (3.0, 3.1, EventType.UNKNOWN, Op.APPEND, {"chaos_id": "b", "mailbox": "m"}),
        ]
    )
    assert [v.rule for v in recovers(events, 2.0)] == ["no-recovery"]


def test_a_short_pause_must_not_raise_the_epoch() -> None:
    def epochs(values: list[int]) -> list[Event]:
        spec: list[tuple[float, float | None, EventType, Op, dict[str, JsonValue]]] = []
        for i in range(len(values)):
            spec.append((float(i), float(i) + 0.1, OK, Op.EPOCH, {"node": "node1"}))
        events = _events(spec)
        # Put the observed epoch on each completion.
        return [
            Event(ev.index, ev.time, ev.wall, ev.process, ev.type, ev.f, ev.op_id, {"epoch": values[ev.op_id]})
            if ev.type is OK
            else ev
            for ev in events
        ]

    assert no_failover(epochs([4, 4, 4]), 2.0) == []
    assert [v.rule for v in no_failover(epochs([4, 4, 5]), 2.0)] == ["unexpected-failover"]


def test_scenario_catalogue() -> None:
    assert set(SMOKE) <= set(SCENARIOS)
    assert len(SCENARIOS) >= 13
    assert sum(s.max_faults for s in SCENARIOS.values()) >= 100
    for s in SCENARIOS.values():
        assert 0 < s.rounds <= 40 and s.gap > 0


HOLDER = """
import sys, lmdb
env = lmdb.open(sys.argv[1], max_dbs=64, subdir=True)
with env.begin(write=True) as txn:
    txn.put(b"k", b"v")
print("open", flush=True)
sys.stdin.readline()
print(env.reader_check(), flush=True)
sys.stdin.readline()
"""


def test_stale_reader_slots_of_killed_readers_are_seen(tmp_path: pathlib.Path) -> None:
    """A process that keeps the environment open plays the store: without it LMDB would reset
    the reader table on the next open and hide the stale slot."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline() == b"open\n"
        reader = subprocess.Popen(
            [sys.executable, "-c", nemesis.READER_SCRIPT, str(tmp_path), "30"], stdout=subprocess.PIPE
        )
        try:
            assert reader.stdout is not None and reader.stdout.readline().startswith(b"reading")
        finally:
            reader.kill()
            reader.wait(10)
            if reader.stdout is not None:
                reader.stdout.close()
        assert nemesis.stale_readers(tmp_path) == [reader.pid]
        holder.stdin.write(b"check\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == b"1\n"  # what the store must do while it runs
        assert nemesis.stale_readers(tmp_path) == []
    finally:
        holder.kill()
        holder.wait(10)
        holder.stdin.close()
        holder.stdout.close()


def test_stale_reader_policy() -> None:
    probe = {"fault": "kill-reader", "phase": "probe"}
    clean = _events(
        [
            (1.0, 1.0, OK, Op.NEMESIS, {**probe, "stale_readers": 0, "pids": []}),
            (2.0, 2.0, OK, Op.NEMESIS, {"fault": "kill-reader", "phase": "heal"}),
            (3.0, 3.1, OK, Op.APPEND, {"chaos_id": "a", "mailbox": "m"}),
        ]
    )
    assert no_stale_readers(clean, 2.0) == []
    stale = _events(
        [
            (1.0, 1.0, OK, Op.NEMESIS, {**probe, "stale_readers": 2, "pids": [11, 12]}),
            (2.0, 2.0, OK, Op.NEMESIS, {"fault": "kill-reader", "phase": "heal"}),
            (3.0, 3.1, OK, Op.APPEND, {"chaos_id": "a", "mailbox": "m"}),
        ]
    )
    assert [v.rule for v in no_stale_readers(stale, 2.0)] == ["stale-reader"]
