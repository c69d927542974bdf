"""Operator commands, run from the host against the cluster's ZooKeeper:
status, switchover, pause/resume, history.

Nothing here decides for the agents: a switchover is a request znode the
active agent acts on; pause is a flag every agent reads each tick. What the
status reports about the floating IP is read from the namespaces'
interfaces, not from what the agents say.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import asdict, dataclass

from haagent import floating_ip, front_ends
from haagent.agent import connect_coordination
from haagent.coordination import ClusterSnapshot, Coordination, HistoryEntry, SwitchoverRequest
from haagent.errors import HaAgentError, SwitchoverRejected
from haagent.supervisor import greets
from haagent.zk_probe import probe_members
from nodeconf.config import ClusterConfig

SWITCHOVER_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0


def _connect(cluster: ClusterConfig, hosts: str | None = None) -> Coordination:
    return connect_coordination(cluster, hosts=hosts, deadline=time.monotonic() + CONNECT_TIMEOUT)


def status_of(cluster: ClusterConfig, snap: ClusterSnapshot) -> dict[str, object]:
    leader = snap.leader
    statuses = {s.name: s for s in snap.nodes}
    nodes = []
    for node in cluster.nodes:
        st = statuses.get(node.name)
        nodes.append(
            {
                "name": node.name,
                "namespace": node.namespace,
                "address": str(node.address.ip),
                "state": st.state if st else "down",
                "health": st.health if st else "unknown",
                "epoch": st.epoch if st else 0,
                "heartbeat_age_s": round(max(0.0, time.time() - st.updated), 3) if st else None,
                "says": st.sentence if st else "",
            }
        )
    members = probe_members(cluster.zookeeper)
    return {
        "cluster": cluster.name,
        "active": leader.node if leader else None,
        "epoch": leader.epoch if leader else snap.epoch_counter,
        "since": leader.since if leader else None,
        "paused": snap.paused,
        "switchover_pending": asdict(snap.switchover) if snap.switchover else None,
        "nodes": nodes,
        "floating_ip": str(cluster.floating_ip.address.ip),
        "floating_ip_holder": floating_ip.holders(cluster),
        "ensemble": {
            "healthy": sum(m.serving for m in members) > len(members) // 2,
            "members": [{"id": m.id, "address": m.address, "mode": m.mode, "serving": m.serving} for m in members],
        },
    }


def cluster_status(cluster: ClusterConfig, hosts: str | None = None) -> dict[str, object]:
    """The status; without ZooKeeper, what the kernel and the ensemble probes
    still tell (with `zookeeper_error` set and no active node)."""
    try:
        coord = _connect(cluster, hosts)
    except HaAgentError as exc:
        empty = ClusterSnapshot(-1, None, 0, (), False, None, None)
        status = status_of(cluster, empty)
        status["zookeeper_error"] = str(exc)
        for node in status["nodes"]:  # type: ignore[attr-defined]
            node["state"] = "unknown"
        return status
    try:
        status = status_of(cluster, coord.snapshot())
        status["zookeeper_error"] = None
        return status
    finally:
        coord.close()


def set_paused(cluster: ClusterConfig, paused: bool, hosts: str | None = None) -> None:
    coord = _connect(cluster, hosts)
    try:
        coord.set_paused(paused)
    finally:
        coord.close()


def read_history(cluster: ClusterConfig, hosts: str | None = None) -> tuple[HistoryEntry, ...]:
    coord = _connect(cluster, hosts)
    try:
        # Each agent appends its own entries when it next can, so the stored
        # order interleaves nodes; time order is what an operator reads.
        return tuple(sorted(coord.history(), key=lambda e: e.time))
    finally:
        coord.close()


class ServiceProbe:
    """Greets the service on the floating IP every few ms in a thread and
    measures the longest gap between two successful greetings."""

    def __init__(self, cluster: ClusterConfig, interval: float = 0.01) -> None:
        self.host = str(cluster.floating_ip.address.ip)
        self.port, self.prefix = front_ends.service_probe(cluster)
        self.interval = interval
        self.successes: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            if greets(self.host, self.port, self.prefix, timeout=0.2):
                self.successes.append(time.monotonic())
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():  # stop() is safe before start() (a rejected switchover)
            self._thread.join()

    def longest_gap(self, since: float) -> float:
        times = [t for t in self.successes if t >= since - 1.0]
        if len(times) < 2:
            return float("nan")
        return max(b - a for a, b in itertools.pairwise(times))


@dataclass(frozen=True)
class SwitchoverResult:
    source: str
    target: str
    epoch: int
    unavailable_s: float  # longest gap between two successful greetings on the floating IP
    took_s: float  # from the request to the candidate serving


def _candidate(snap: ClusterSnapshot, to: str | None) -> str:
    if snap.leader is None:
        raise SwitchoverRejected("no active node: nothing to switch over")
    if snap.paused:
        raise SwitchoverRejected("maintenance mode is on: run `mailha resume` first")
    if snap.switchover is not None and snap.switchover.deadline > time.time():
        raise SwitchoverRejected("a switchover is already pending")
    if to == snap.leader.node:
        raise SwitchoverRejected(f"{to} is already active")
    for st in snap.nodes:
        if st.name == snap.leader.node or (to is not None and st.name != to):
            continue
        if st.state == "standby" and st.health in ("ok", "stopped"):
            return st.name
    who = to or "any standby"
    raise SwitchoverRejected(f"{who} is not a healthy standby")


def switchover(
    cluster: ClusterConfig, to: str | None = None, *, hosts: str | None = None, timeout: float = SWITCHOVER_TIMEOUT
) -> SwitchoverResult:
    """Ask the active to drain and cede to `to` (default: any healthy standby);
    return once the candidate serves on the floating IP."""
    coord = _connect(cluster, hosts)
    probe = ServiceProbe(cluster)
    try:
        snap = coord.snapshot()
        target = _candidate(snap, to)
        assert snap.leader is not None
        source = snap.leader.node
        probe.start()
        time.sleep(0.05)  # a greeting before the request, to measure the gap from
        t0 = time.monotonic()
        now = time.time()
        coord.request_switchover(SwitchoverRequest(source, target, now, now + timeout))
        deadline = t0 + timeout
        seen_leading: float | None = None
        try:
            while True:
                if time.monotonic() > deadline:
                    raise SwitchoverRejected(f"{target} did not take over within {timeout:.0f} s")
                snap = coord.snapshot()
                leader = snap.leader
                st = snap.node_status(target)
                if leader is not None and leader.node == target and st is not None and st.state == "active":
                    if seen_leading is None:
                        seen_leading = time.monotonic()
                    # Served by the candidate: a greeting after it became active,
                    # with the address on its interface and nowhere else.
                    if any(t > seen_leading for t in probe.successes) and floating_ip.holders(cluster) == [target]:
                        took = time.monotonic() - t0
                        return SwitchoverResult(source, target, leader.epoch, probe.longest_gap(t0), took)
                time.sleep(0.02)
        finally:
            # Leave no constraint behind, whatever happened.
            coord.clear_switchover()
    finally:
        probe.stop()
        coord.close()
