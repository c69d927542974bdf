"""The HA agent's states and the only transitions allowed between them.

The table is the single source of truth: the decision loop asks it before
every move, and `to_dot()` draws the diagram from it.
"""

from __future__ import annotations

import enum


class AgentState(enum.Enum):
    STANDBY = "standby"  # services stopped; watching the leader znode
    ACQUIRING = "acquiring"  # creating the leader znode and bumping the epoch (one ZK transaction)
    FENCING = "fencing"  # holding leadership; fencing the previous active node
    ACTIVATING = "activating"  # storage, store --fence EPOCH, floating IP + GARP, front ends
    ACTIVE = "active"  # serving; supervising its services
    SUSPENDED = "suspended"  # ZK connection lost: writes stopped, IP dropped, session fate unknown
    RELEASING = "releasing"  # draining, stopping services, dropping the IP, deleting the leader znode
    PAUSED = "paused"  # maintenance mode on a non-active node: never acquires
    FAILED = "failed"  # a takeover or the services failed here; cools down before standing by again


S = AgentState

TRANSITIONS: dict[AgentState, frozenset[AgentState]] = {
    S.STANDBY: frozenset({S.ACQUIRING, S.PAUSED}),
    S.ACQUIRING: frozenset({S.FENCING, S.STANDBY}),
    S.FENCING: frozenset({S.ACTIVATING, S.RELEASING}),
    S.ACTIVATING: frozenset({S.ACTIVE, S.RELEASING, S.SUSPENDED}),
    S.ACTIVE: frozenset({S.RELEASING, S.SUSPENDED}),
    # From SUSPENDED: the same session came back with the lock (resume), or
    # the session is gone (tear down).
    S.SUSPENDED: frozenset({S.ACTIVE, S.RELEASING}),
    S.RELEASING: frozenset({S.STANDBY, S.FAILED}),
    S.PAUSED: frozenset({S.STANDBY}),
    S.FAILED: frozenset({S.STANDBY}),
}

# States in which this node may hold the leader znode.
LEADER_STATES = frozenset({S.FENCING, S.ACTIVATING, S.ACTIVE, S.SUSPENDED, S.RELEASING})
# Transient states: the loop runs the next tick at once instead of waiting.
TRANSIENT_STATES = frozenset({S.ACQUIRING, S.FENCING, S.ACTIVATING, S.RELEASING})


class IllegalTransition(RuntimeError):
    """A move the table does not allow: a bug in the decision function."""


def check_transition(old: AgentState, new: AgentState) -> None:
    if new is not old and new not in TRANSITIONS[old]:
        raise IllegalTransition(f"{old.value} -> {new.value} is not in the transition table")


def to_dot() -> str:
    """The transition table as a Graphviz digraph."""
    lines = ["digraph agent {"]
    for old in AgentState:
        for new in sorted(TRANSITIONS[old], key=lambda s: s.value):
            lines.append(f"  {old.value} -> {new.value};")
    lines.append("}")
    return "\n".join(lines)
