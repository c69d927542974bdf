"""An in-memory ZooKeeper with the same semantics as the kazoo implementation,
for unit tests of the decision loop: sessions own ephemeral records, the
leader transaction is all-or-nothing, and tests can suspend, reconnect or
expire a client's session.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field

from haagent.coordination import (
    HISTORY_LIMIT,
    ClusterSnapshot,
    HistoryEntry,
    LastActive,
    LeaderRecord,
    NodeStatus,
    SessionInfo,
    SessionState,
    SwitchoverRequest,
    Waker,
)
from haagent.errors import CoordinationUnavailable, LeadershipTaken, SwitchoverRejected


@dataclass
class _Data:
    epoch: int = 0
    leader: LeaderRecord | None = None
    last_active: LastActive | None = None
    nodes: dict[str, tuple[int, NodeStatus]] = field(default_factory=dict)  # name -> (owner session, status)
    paused: bool = False
    switchover: SwitchoverRequest | None = None
    history: list[HistoryEntry] = field(default_factory=list)


class FakeZooKeeper:
    """The shared server side. `client()` opens a new session."""

    def __init__(self, clock: float = 1000.0) -> None:
        self.data = _Data()
        self.lock = threading.Lock()
        self.clients: list[FakeCoordination] = []
        self._ids = itertools.count(0x1000)
        self.clock = clock  # the wall clock handed to records; tests move it

    def client(self) -> FakeCoordination:
        c = FakeCoordination(self, next(self._ids))
        self.clients.append(c)
        return c

    def wake_all(self) -> None:
        for c in self.clients:
            c.wake()

    def drop_session(self, session_id: int) -> None:
        """Server-side expiry: every ephemeral record of the session vanishes."""
        with self.lock:
            if self.data.leader is not None and self.data.leader.session_id == session_id:
                self.data.leader = None
            self.data.nodes = {k: v for k, v in self.data.nodes.items() if v[0] != session_id}
        self.wake_all()


class FakeCoordination:
    def __init__(self, zk: FakeZooKeeper, session_id: int) -> None:
        self.zk = zk
        self.session_id = session_id
        self.state = SessionState.CONNECTED
        self._waker: Waker | None = None
        self.calls: list[str] = []  # names of the I/O methods called, for assertions

    # -- test controls -------------------------------------------------------
    def wake(self) -> None:
        if self._waker is not None:
            self._waker()

    def suspend(self) -> None:
        self.state = SessionState.SUSPENDED
        self.wake()

    def reconnect(self) -> None:
        self.state = SessionState.CONNECTED
        self.wake()

    def expire(self) -> None:
        """The server expired the session; the client reconnects with a new one."""
        self.zk.drop_session(self.session_id)
        self.session_id = next(self.zk._ids)
        self.state = SessionState.CONNECTED
        self.wake()

    def _check(self, name: str) -> None:
        self.calls.append(name)
        if self.state is not SessionState.CONNECTED:
            raise CoordinationUnavailable(f"session {self.state.value}")

    # -- Coordination ----------------------------------------------------------
    def session(self) -> SessionInfo:
        return SessionInfo(self.state, self.session_id)

    def set_waker(self, waker: Waker) -> None:
        self._waker = waker

    def snapshot(self) -> ClusterSnapshot:
        self._check("snapshot")
        with self.zk.lock:
            d = self.zk.data
            return ClusterSnapshot(
                my_session=self.session_id,
                leader=d.leader,
                epoch_counter=d.epoch,
                nodes=tuple(status for _, status in sorted(d.nodes.values(), key=lambda v: v[1].name)),
                paused=d.paused,
                switchover=d.switchover,
                last_active=d.last_active,
            )

    def acquire(self, node: str, seen_counter: int) -> LeaderRecord:
        self._check("acquire")
        with self.zk.lock:
            d = self.zk.data
            if d.leader is not None:
                raise LeadershipTaken(f"{d.leader.node} leads with epoch {d.leader.epoch}")
            if d.epoch != seen_counter:
                raise LeadershipTaken(f"epoch counter moved from {seen_counter} to {d.epoch}")
            d.epoch += 1
            d.leader = LeaderRecord(node=node, epoch=d.epoch, session_id=self.session_id, since=self.zk.clock)
            leader = d.leader
        self.zk.wake_all()
        return leader

    def release(self, leader: LeaderRecord, last_active: LastActive | None) -> None:
        self._check("release")
        with self.zk.lock:
            d = self.zk.data
            if d.leader != leader or leader.session_id != self.session_id:
                return
            d.leader = None
            if last_active is not None:
                d.last_active = last_active
        self.zk.wake_all()

    def set_last_active(self, leader: LeaderRecord, record: LastActive) -> None:
        self._check("set_last_active")
        with self.zk.lock:
            if self.zk.data.leader != leader or leader.session_id != self.session_id:
                raise LeadershipTaken("leader znode is no longer ours")
            self.zk.data.last_active = record

    def publish_status(self, status: NodeStatus) -> None:
        self._check("publish_status")
        with self.zk.lock:
            self.zk.data.nodes[status.name] = (self.session_id, status)

    def set_paused(self, paused: bool) -> None:
        self._check("set_paused")
        with self.zk.lock:
            self.zk.data.paused = paused
        self.zk.wake_all()

    def request_switchover(self, request: SwitchoverRequest) -> None:
        self._check("request_switchover")
        with self.zk.lock:
            if self.zk.data.switchover is not None:
                raise SwitchoverRejected("a switchover is already pending")
            self.zk.data.switchover = request
        self.zk.wake_all()

    def clear_switchover(self) -> None:
        self._check("clear_switchover")
        with self.zk.lock:
            self.zk.data.switchover = None
        self.zk.wake_all()

    def append_history(self, entries: tuple[HistoryEntry, ...]) -> None:
        self._check("append_history")
        with self.zk.lock:
            self.zk.data.history.extend(entries)
            del self.zk.data.history[:-HISTORY_LIMIT]

    def history(self) -> tuple[HistoryEntry, ...]:
        self._check("history")
        with self.zk.lock:
            return tuple(self.zk.data.history)

    def close(self) -> None:
        self.zk.drop_session(self.session_id)
