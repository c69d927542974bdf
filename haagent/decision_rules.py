"""The pure half of the decision loop: `decide(facts, snapshot)` turns what
ZooKeeper said and what this node knows into the next state, the actions to
take and the reason. No I/O, no clock: tests call it exhaustively.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from haagent.coordination import ClusterSnapshot, SessionState
from haagent.states import AgentState

S = AgentState


class Health(enum.Enum):
    OK = "ok"
    STARTING = "starting"
    FAILING = "failing"  # a health check failed beyond the restart policy
    STOPPED = "stopped"


class Progress(enum.Enum):
    """Outcome of the actions run on entering the current state."""

    DONE = "done"
    FAILED = "failed"


class Action(enum.Enum):
    ACQUIRE = "acquire"  # ZK transaction: create /leader, epoch+1
    FENCE_PREVIOUS = "fence previous active"
    ACTIVATE = "activate"  # storage, store --fence EPOCH, floating IP + GARP, front ends
    MARK_ACTIVE = "mark active"  # /last_active = me; clear the switchover request
    STOP_WRITES = "stop writes"  # store SetWritable(false), drop the floating IP
    RESUME_WRITES = "resume writes"  # store SetWritable(true), add the floating IP
    RELEASE = "release"  # drain, stop services, drop IP, deactivate storage, delete /leader
    CLEAR_SWITCHOVER = "clear expired switchover"
    RESTART_SERVICES = "restart services"  # paused active whose services failed: restart, keep leadership


@dataclass(frozen=True)
class LocalFacts:
    node: str
    state: AgentState
    session: SessionState
    progress: Progress
    health: Health
    state_age: float  # seconds spent in the current state
    session_timeout: float
    failed_cooldown: float
    now: float  # wall clock; only compared with switchover deadlines
    failure_pending: bool  # the current release was caused by a failure here
    # Peers are configured and this agent started less than a session timeout
    # ago: a first activation (no /last_active) waits, so that every agent
    # started with it has published its heartbeat and is not fenced as unknown.
    peers_settling: bool = False


@dataclass(frozen=True)
class Decision:
    next_state: AgentState
    actions: tuple[Action, ...]
    reason: str


def _stay(facts: LocalFacts, reason: str = "", *actions: Action) -> Decision:
    return Decision(facts.state, actions, reason)


def _go(state: AgentState, reason: str, *actions: Action) -> Decision:
    return Decision(state, actions, reason)


def _switchover_live(facts: LocalFacts, snap: ClusterSnapshot) -> bool:
    return snap.switchover is not None and snap.switchover.deadline > facts.now


def _may_acquire(facts: LocalFacts, snap: ClusterSnapshot) -> bool:
    """A pending switchover reserves the vacancy for its target."""
    if not _switchover_live(facts, snap):
        return True
    req = snap.switchover
    assert req is not None
    if req.target is not None and req.target != facts.node and snap.node_status(req.target) is None:
        return True  # the target's agent is gone: the reservation would only prolong the outage
    return facts.node != req.source and req.target in (None, facts.node)


def _switchover_candidate(facts: LocalFacts, snap: ClusterSnapshot) -> str | None:
    """The healthy standby a live switchover request from this node names."""
    req = snap.switchover
    if req is None or not _switchover_live(facts, snap) or req.source != facts.node:
        return None
    for status in snap.nodes:
        if status.name == facts.node or (req.target is not None and status.name != req.target):
            continue
        if status.state == S.STANDBY.value and status.health in (Health.OK.value, Health.STOPPED.value):
            return status.name
    return None


def decide(facts: LocalFacts, snap: ClusterSnapshot | None) -> Decision:
    """Pure: what to do next, from what ZooKeeper said and what this node knows."""
    state = facts.state
    connected = snap is not None and facts.session is SessionState.CONNECTED

    # Fail safe first: without a ZooKeeper answer a leader cannot know it still
    # leads, so it stops writing before the session can expire elsewhere.
    if not connected:
        if state in (S.ACTIVE, S.ACTIVATING):
            return _go(S.SUSPENDED, "ZooKeeper session suspended", Action.STOP_WRITES)
        if state is S.FENCING:
            return _go(S.RELEASING, "ZooKeeper session suspended while fencing", Action.RELEASE)
        if state is S.SUSPENDED and (facts.session is SessionState.LOST or facts.state_age >= facts.session_timeout):
            # By now the server has expired the session: someone else may lead.
            return _go(S.RELEASING, "ZooKeeper session lost", Action.RELEASE)
        if state is S.ACQUIRING:
            return _go(S.STANDBY, "ZooKeeper unavailable while acquiring")
        if state is S.RELEASING:
            return _go(S.FAILED if facts.failure_pending else S.STANDBY, "released")
        if state is S.FAILED and facts.state_age >= facts.failed_cooldown:
            return _go(S.STANDBY, "cool-down over")
        return _stay(facts, "waiting for ZooKeeper")

    assert snap is not None
    holds = snap.holds_lock(facts.node)

    if state in (S.FENCING, S.ACTIVATING, S.ACTIVE) and not holds:
        return _go(S.RELEASING, "lock lost (ZooKeeper session expired)", Action.RELEASE)

    if state is S.STANDBY:
        if holds:
            # A leader znode of ours survived a release that could not reach
            # ZooKeeper: delete it so the vacancy is real.
            return _stay(facts, "deleting a stale leader znode of mine", Action.RELEASE)
        if snap.paused:
            return _go(S.PAUSED, "maintenance mode on")
        if snap.leader is None and facts.health is not Health.FAILING and _may_acquire(facts, snap):
            if snap.last_active is None and facts.peers_settling:
                return _stay(facts, "first activation: waiting for the other agents' heartbeats")
            return _go(S.ACQUIRING, _vacancy_reason(facts, snap), Action.ACQUIRE)
        return _stay(facts)

    if state is S.PAUSED:
        if not snap.paused:
            return _go(S.STANDBY, "maintenance mode off")
        return _stay(facts, "maintenance mode")

    if state is S.ACQUIRING:
        if facts.progress is Progress.DONE and holds:
            return _go(S.FENCING, "leadership acquired", Action.FENCE_PREVIOUS)
        return _go(S.STANDBY, "leader taken by another node")

    if state is S.FENCING:
        if facts.progress is Progress.DONE:
            return _go(S.ACTIVATING, "previous active fenced", Action.ACTIVATE)
        return _go(S.RELEASING, "fencing failed", Action.RELEASE)

    if state is S.ACTIVATING:
        if facts.progress is Progress.DONE:
            return _go(S.ACTIVE, "services up", Action.MARK_ACTIVE)
        return _go(S.RELEASING, "activation failed", Action.RELEASE)

    if state is S.ACTIVE:
        candidate = _switchover_candidate(facts, snap)
        if candidate is not None:
            return _go(S.RELEASING, f"switchover to {candidate}", Action.RELEASE)
        if facts.health is Health.FAILING:
            if snap.paused:
                # No failover in maintenance mode, but never silently down.
                return _stay(facts, "services failing while paused: restarting them", Action.RESTART_SERVICES)
            return _go(S.RELEASING, "failed health check", Action.RELEASE)
        if snap.switchover is not None and not _switchover_live(facts, snap):
            return _stay(facts, "removing an expired switchover request", Action.CLEAR_SWITCHOVER)
        return _stay(facts)

    if state is S.SUSPENDED:
        if holds:
            return _go(S.ACTIVE, "ZooKeeper session restored, lock still held", Action.RESUME_WRITES)
        return _go(S.RELEASING, "ZooKeeper session lost", Action.RELEASE)

    if state is S.RELEASING:
        return _go(S.FAILED if facts.failure_pending else S.STANDBY, "released")

    # FAILED
    if facts.state_age >= facts.failed_cooldown:
        return _go(S.STANDBY, "cool-down over")
    return _stay(facts, "cooling down after a failure")


def _vacancy_reason(facts: LocalFacts, snap: ClusterSnapshot) -> str:
    prev = snap.last_active
    if prev is None:
        return "leader vacant (first activation)"
    if prev.node == facts.node:
        return "leader vacant (I was the last active)"
    if prev.clean:
        if snap.switchover is not None:
            return f"switchover from {prev.node}"
        return f"leader vacant ({prev.node} released)"
    return f"leader vacant ({prev.node} vanished: process crash or ZooKeeper session loss)"
