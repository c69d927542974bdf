"""The haagent exception root and its few subclasses.

Operator commands turn these into one-line messages and exit status 1 in one
place (haagent/agent_cli.py); the decision loop turns failed actions into
transitions, never into crashes.
"""

from __future__ import annotations


class HaAgentError(Exception):
    """Root of every error the HA agent raises on purpose."""


class CoordinationUnavailable(HaAgentError):
    """ZooKeeper cannot be read or written right now (suspended, lost, unreachable)."""


class LeadershipTaken(HaAgentError):
    """Another session holds the leader znode, or the epoch counter moved under us."""


class SwitchoverRejected(HaAgentError):
    """A switchover request cannot be accepted (no active, unhealthy candidate, one pending)."""


class ActionFailed(HaAgentError):
    """A takeover or release step (fencing, storage, store, IP, front ends) failed."""
