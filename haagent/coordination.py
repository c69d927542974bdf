"""The narrow interface between the HA agent and ZooKeeper.

Everything the agent and the operator commands know about the cluster comes
through `Coordination`, as immutable records. Two implementations:
`haagent.coordination_kazoo.KazooCoordination` (real ZooKeeper) and
`haagent.coordination_fake.FakeZooKeeper` (in memory, for unit tests).

ZooKeeper layout under the configured chroot (all nodes carry digest ACLs):

    /epoch          persistent; the writer-epoch counter as ASCII digits
    /leader         ephemeral; JSON LeaderRecord of the session that leads
    /last_active    persistent; JSON LastActive (who wrote last, was it clean)
    /nodes/NAME     ephemeral; JSON NodeStatus heartbeat of each agent
    /paused         persistent; exists while maintenance mode is on
    /switchover     persistent; JSON SwitchoverRequest while one is pending
    /history/h-NNN  persistent sequential; JSON HistoryEntry, the newest
                    HISTORY_LIMIT kept
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

HISTORY_LIMIT = 500


class SessionState(enum.Enum):
    CONNECTED = "connected"
    SUSPENDED = "suspended"  # connection lost; the session may still be alive on the server
    LOST = "lost"  # the session expired: every ephemeral node of ours is gone


@dataclass(frozen=True)
class SessionInfo:
    state: SessionState
    session_id: int | None  # None before the first connection


@dataclass(frozen=True)
class LeaderRecord:
    node: str
    epoch: int
    session_id: int
    since: float  # wall-clock time of acquisition, for display only


@dataclass(frozen=True)
class LastActive:
    node: str
    epoch: int
    # True when that node released leadership itself after stopping every
    # service: the next leader need not fence it.
    clean: bool
    stopped_serving_at: float  # wall clock; when it stopped serving (clean) or 0


@dataclass(frozen=True)
class NodeStatus:
    name: str
    state: str  # AgentState value
    health: str  # "ok", "starting", "failing", "stopped"
    epoch: int
    updated: float  # wall clock of this heartbeat
    sentence: str  # what its decision loop last said


@dataclass(frozen=True)
class SwitchoverRequest:
    source: str  # the active node when the request was made
    target: str | None  # None: any healthy standby
    requested_at: float
    deadline: float  # wall clock after which the request is ignored and removed


@dataclass(frozen=True)
class HistoryEntry:
    time: float
    node: str
    from_state: str
    to_state: str
    epoch: int
    reason: str
    downtime_s: float | None = None


@dataclass(frozen=True)
class ClusterSnapshot:
    """What ZooKeeper said during one tick. Each field was read atomically by
    itself; the fields together are not one consistent cut (ZooKeeper has no
    multi-read), which the decision function tolerates: every decision that
    matters is re-checked by a version-checked write."""

    my_session: int
    leader: LeaderRecord | None
    epoch_counter: int
    nodes: tuple[NodeStatus, ...]
    paused: bool
    switchover: SwitchoverRequest | None
    last_active: LastActive | None

    def holds_lock(self, node: str) -> bool:
        return self.leader is not None and self.leader.node == node and self.leader.session_id == self.my_session

    def node_status(self, name: str) -> NodeStatus | None:
        for status in self.nodes:
            if status.name == name:
                return status
        return None


Waker = Callable[[], None]


class Coordination(Protocol):
    """The agent's view of ZooKeeper. Methods other than `session` and
    `set_waker` do network I/O and raise CoordinationUnavailable when
    ZooKeeper cannot answer; call them from a worker thread."""

    def session(self) -> SessionInfo:
        """The connection state as last reported by the client. No I/O."""
        ...

    def set_waker(self, waker: Waker) -> None:
        """`waker()` is called (from any thread, must not block) whenever the
        leader, switchover request, pause flag or session state changes."""
        ...

    def snapshot(self) -> ClusterSnapshot:
        """Read every record; see ClusterSnapshot for the atomicity."""
        ...

    def acquire(self, node: str, seen_counter: int) -> LeaderRecord:
        """One ZooKeeper transaction: create the ephemeral /leader AND raise
        /epoch from `seen_counter` to seen_counter+1 with a version check.
        Both happen or neither; raises LeadershipTaken otherwise. The epoch
        is therefore unique per acquisition and strictly increasing."""
        ...

    def release(self, leader: LeaderRecord, last_active: LastActive | None) -> None:
        """One transaction: delete /leader only if this session still owns it
        (version-checked), and when `last_active` is given, write it in the same
        transaction. A no-op if the leader znode is no longer ours."""
        ...

    def set_last_active(self, leader: LeaderRecord, record: LastActive) -> None:
        """Write /last_active, only while `leader` is still ours (one transaction
        with a version check of /leader); raises LeadershipTaken otherwise."""
        ...

    def publish_status(self, status: NodeStatus) -> None:
        """Create or overwrite this node's ephemeral heartbeat. Last writer wins."""
        ...

    def set_paused(self, paused: bool) -> None:
        """Create or delete /paused. Idempotent."""
        ...

    def request_switchover(self, request: SwitchoverRequest) -> None:
        """Create /switchover; raises SwitchoverRejected if one is pending."""
        ...

    def clear_switchover(self) -> None:
        """Delete /switchover if present. Idempotent."""
        ...

    def append_history(self, entries: tuple[HistoryEntry, ...]) -> None:
        """Append entries (each its own sequential znode) and trim to the
        newest HISTORY_LIMIT. Appends are atomic per entry; trimming may race
        with another writer's trim, which only ever deletes old entries."""
        ...

    def history(self) -> tuple[HistoryEntry, ...]:
        """Every stored entry, oldest first."""
        ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------
# JSON encoding of the records (shared by both implementations)


def encode(record: LeaderRecord | LastActive | NodeStatus | SwitchoverRequest | HistoryEntry) -> bytes:
    return json.dumps(asdict(record), sort_keys=True).encode()


def _obj(data: bytes) -> dict[str, object]:
    value = json.loads(data.decode())
    if not isinstance(value, dict):
        raise TypeError("record is not a JSON object")
    return value


def _str(d: dict[str, object], key: str) -> str:
    v = d[key]
    if not isinstance(v, str):
        raise TypeError(f"{key}: not a string")
    return v


def _int(d: dict[str, object], key: str) -> int:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{key}: not an integer")
    return v


def _float(d: dict[str, object], key: str) -> float:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{key}: not a number")
    return float(v)


def decode_leader(data: bytes) -> LeaderRecord:
    d = _obj(data)
    return LeaderRecord(
        node=_str(d, "node"), epoch=_int(d, "epoch"), session_id=_int(d, "session_id"), since=_float(d, "since")
    )


def decode_last_active(data: bytes) -> LastActive:
    d = _obj(data)
    return LastActive(
        node=_str(d, "node"),
        epoch=_int(d, "epoch"),
        clean=bool(d["clean"]),
        stopped_serving_at=_float(d, "stopped_serving_at"),
    )


def decode_status(data: bytes) -> NodeStatus:
    d = _obj(data)
    return NodeStatus(
        name=_str(d, "name"),
        state=_str(d, "state"),
        health=_str(d, "health"),
        epoch=_int(d, "epoch"),
        updated=_float(d, "updated"),
        sentence=_str(d, "sentence"),
    )


def decode_switchover(data: bytes) -> SwitchoverRequest:
    d = _obj(data)
    target = d.get("target")
    return SwitchoverRequest(
        source=_str(d, "source"),
        target=target if isinstance(target, str) else None,
        requested_at=_float(d, "requested_at"),
        deadline=_float(d, "deadline"),
    )


def decode_history(data: bytes) -> HistoryEntry:
    d = _obj(data)
    downtime = d.get("downtime_s")
    return HistoryEntry(
        time=_float(d, "time"),
        node=_str(d, "node"),
        from_state=_str(d, "from_state"),
        to_state=_str(d, "to_state"),
        epoch=_int(d, "epoch"),
        reason=_str(d, "reason"),
        downtime_s=float(downtime) if isinstance(downtime, (int, float)) and not isinstance(downtime, bool) else None,
    )
