"""The agent's one decision loop.

Each tick re-reads ZooKeeper through the coordination interface, calls the
pure function `decide(facts, snapshot)` (haagent/decision_rules.py),
performs the actions it returns, and returns ONE sentence saying what it did
("I am node1, active with epoch 7, lock held"). The loop is the only place
that changes the agent's state, and every change is checked against
haagent.states.TRANSITIONS.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol, TypeVar

import trio

from haagent.coordination import (
    ClusterSnapshot,
    Coordination,
    HistoryEntry,
    LastActive,
    LeaderRecord,
    NodeStatus,
    SessionState,
)
from haagent.decision_rules import Action, Decision, Health, LocalFacts, Progress, decide
from haagent.errors import HaAgentError
from haagent.states import LEADER_STATES, TRANSIENT_STATES, AgentState, check_transition

# Re-exported: the loop's callers and tests name these through this module.
__all__ = ["Action", "Actuator", "Decision", "DecisionLoop", "Health", "LocalFacts", "Progress", "decide"]

log = logging.getLogger("mailha.haagent")

S = AgentState
T = TypeVar("T")


# ---------------------------------------------------------------------------
# The loop


class Actuator(Protocol):
    """What the loop does to the node. Raise HaAgentError on failure."""

    async def fence(self, previous: LastActive, epoch: int) -> None: ...

    async def activate(self, epoch: int) -> None: ...

    async def stop_writes(self, epoch: int) -> None:
        """Fast and best effort: must not raise. `epoch`: the one this node holds."""
        ...

    async def resume_writes(self, epoch: int) -> None: ...

    async def restart_services(self, epoch: int) -> None:
        """Stop and start this active node's services under the same epoch."""
        ...

    async def release(self, epoch: int, drain: bool) -> float:
        """Stop writing and serving under `epoch` (the one this node held) (drain the front ends first when `drain`),
        drop the IP. Best effort; returns the wall-clock time at which this
        node stopped serving. May leave the rest of the shutdown (a store
        with writes suspended) to after_release, run once leadership is gone."""
        ...

    async def after_release(self, epoch: int) -> None:
        """Finish stopping what ran under `epoch` (store, storage deactivation). Best effort."""
        ...

    def health(self) -> Health: ...


# Transitions that count as "a failure here" and end in FAILED after release.
_FAILURE_REASONS = ("fencing failed", "activation failed", "failed health check")


# States of a live agent that neither writes nor serves.
_NOT_SERVING = frozenset(st.value for st in (S.STANDBY, S.PAUSED, S.ACQUIRING, S.FAILED))


def unaccounted_peers(peers: tuple[str, ...], snap: ClusterSnapshot) -> list[str]:
    """Peers that might serve: no live agent heartbeat, or one in a serving state."""
    out = []
    for peer in peers:
        status = snap.node_status(peer)
        if status is None or status.state not in _NOT_SERVING:
            out.append(peer)
    return out


class DecisionLoop:
    def __init__(
        self,
        node: str,
        coordination: Coordination,
        actuator: Actuator,
        *,
        session_timeout: float,
        failed_cooldown: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        run_io: Callable[[Callable[[], object]], object] | None = None,
        peers: tuple[str, ...] = (),
    ) -> None:
        self.node = node
        self.peers = tuple(p for p in peers if p != node)  # the other configured nodes
        self.coord = coordination
        self.actuator = actuator
        self.session_timeout = session_timeout
        self.failed_cooldown = failed_cooldown
        self.monotonic = monotonic
        self.wall = wall
        self.state = S.STANDBY
        self.progress = Progress.DONE
        self.entered = monotonic()
        self.started = self.entered
        self.leader: LeaderRecord | None = None
        self.failure_pending = False
        self.transitions = 0
        self.last_error = ""
        self.snapshot: ClusterSnapshot | None = None
        self._pending_history: list[HistoryEntry] = []
        self._last_seen_serving: dict[str, float] = {}
        self._release_reason = ""
        self._outage_start: float | None = None
        self._action_scope: trio.CancelScope | None = None
        # The writer epoch: the one owner in the agent. Set by ACQUIRE only, kept
        # after leadership is gone (history, releasing what ran under it), and
        # handed to the actuator with every call that needs it.
        self.held_epoch = 0

    @property
    def epoch(self) -> int:
        """The epoch while this node leads, else 0."""
        return self.held_epoch if self.leader is not None else 0

    async def _io(self, fn: Callable[[], T]) -> T:
        """ZooKeeper I/O blocks (kazoo is threaded): run it off the trio thread."""
        return await trio.to_thread.run_sync(fn)

    def facts(self) -> LocalFacts:
        return LocalFacts(
            node=self.node,
            state=self.state,
            session=self.coord.session().state,
            progress=self.progress,
            health=self.actuator.health(),
            state_age=self.monotonic() - self.entered,
            session_timeout=self.session_timeout,
            failed_cooldown=self.failed_cooldown,
            now=self.wall(),
            failure_pending=self.failure_pending,
            peers_settling=bool(self.peers) and self.monotonic() - self.started < self.session_timeout,
        )

    async def tick(self) -> str:
        snap: ClusterSnapshot | None = None
        session = self.coord.session()
        if session.state is SessionState.CONNECTED:
            if self._mid_takeover(session.session_id):
                # The leader znode is ephemeral and only its owner deletes it:
                # while the session that created it lives, it is ours. Skipping
                # the re-read here saves a ZooKeeper round trip per takeover step.
                snap = self.snapshot
            else:
                try:
                    snap = await self._io(self.coord.snapshot)
                except HaAgentError:
                    snap = None
        self.snapshot = snap
        if snap is not None:
            for status in snap.nodes:
                if status.state == S.ACTIVE.value and status.health == Health.OK.value:
                    self._last_seen_serving[status.name] = status.updated
        decision = decide(self.facts(), snap)
        old = self.state
        if decision.next_state is not old:
            self._enter(decision.next_state, decision.reason)
        error = await self._act(decision, snap)
        await self._publish()
        return self.sentence(old, decision, error)

    def _enter(self, new: AgentState, reason: str) -> None:
        check_transition(self.state, new)
        old = self.state
        # Leaving leadership: the entry names the epoch it held, already released.
        epoch = self.epoch or (self.held_epoch if old in LEADER_STATES else 0)
        self.state = new
        self.entered = self.monotonic()
        self.transitions += 1
        if new is S.RELEASING:
            self.failure_pending = reason in _FAILURE_REASONS
            self._release_reason = reason
        if new is S.STANDBY or new is S.FAILED:
            self.failure_pending = False
            self.leader = None
        if new is S.ACQUIRING:
            self._outage_start = None
        downtime: float | None = None
        if new is S.ACTIVE and old is S.ACTIVATING and self._outage_start is not None:
            downtime = max(0.0, self.wall() - self._outage_start)
        self._pending_history.append(
            HistoryEntry(
                time=self.wall(),
                node=self.node,
                from_state=old.value,
                to_state=new.value,
                epoch=epoch,
                reason=reason,
                downtime_s=downtime,
            )
        )

    async def _act(self, decision: Decision, snap: ClusterSnapshot | None) -> str:
        if not decision.actions:
            return ""
        # Fencing and activation can take seconds; losing the ZooKeeper
        # session meanwhile must not wait for them (interrupt_if_uncertain).
        interruptible = self.state in (S.FENCING, S.ACTIVATING)
        with trio.CancelScope() as scope:
            self._action_scope = scope if interruptible else None
            try:
                for action in decision.actions:
                    await self._perform(action, snap)
            except HaAgentError as exc:
                self.progress = Progress.FAILED
                self.last_error = str(exc)
                return str(exc)
            finally:
                self._action_scope = None
        if scope.cancelled_caught:
            self.progress = Progress.FAILED
            self.last_error = "interrupted: ZooKeeper session suspended"
            return self.last_error
        self.progress = Progress.DONE
        return ""

    def _mid_takeover(self, session_id: int | None) -> bool:
        snap = self.snapshot
        return (
            self.state in (S.ACQUIRING, S.FENCING, S.ACTIVATING)
            and self.progress is Progress.DONE
            and self.leader is not None
            and snap is not None
            and snap.leader == self.leader
            and session_id == self.leader.session_id
        )

    def interrupt_if_uncertain(self) -> None:
        """Called on the trio thread whenever ZooKeeper news arrives: if the
        session is no longer connected while fencing or activation runs,
        cancel it so the next tick can stop writes at once."""
        scope = self._action_scope
        if scope is not None and self.coord.session().state is not SessionState.CONNECTED:
            scope.cancel()

    async def _perform(self, action: Action, snap: ClusterSnapshot | None) -> None:
        if action is Action.ACQUIRE:
            assert snap is not None
            counter = snap.epoch_counter
            self.leader = await self._io(lambda: self.coord.acquire(self.node, counter))
            self.held_epoch = self.leader.epoch
            self._outage_start = self._estimate_outage_start(snap)
            self.snapshot = replace(snap, leader=self.leader, epoch_counter=self.leader.epoch)
            # The ACQUIRING entry was written before the epoch existed.
            last = self._pending_history[-1] if self._pending_history else None
            if last is not None and last.to_state == S.ACQUIRING.value:
                self._pending_history[-1] = replace(last, epoch=self.leader.epoch)
        elif action is Action.FENCE_PREVIOUS:
            assert snap is not None
            prev = snap.last_active
            if prev is None:
                # First activation: nobody recorded who wrote last (a new
                # cluster, or ZooKeeper's data lost), so any node may still
                # serve: fence every peer not known to be standing by.
                for peer in unaccounted_peers(self.peers, snap):
                    await self.actuator.fence(LastActive(peer, 0, clean=False, stopped_serving_at=0.0), self.epoch)
            elif prev.node != self.node and not prev.clean:
                await self.actuator.fence(prev, self.epoch)
        elif action is Action.ACTIVATE:
            await self.actuator.activate(self.epoch)
        elif action is Action.MARK_ACTIVE:
            leader = self.leader
            assert leader is not None
            record = LastActive(node=self.node, epoch=leader.epoch, clean=False, stopped_serving_at=0.0)
            await self._io(lambda: self.coord.set_last_active(leader, record))
            if snap is not None and snap.switchover is not None:
                await self._io(self.coord.clear_switchover)
        elif action is Action.STOP_WRITES:
            await self.actuator.stop_writes(self.held_epoch)
        elif action is Action.RESUME_WRITES:
            await self.actuator.resume_writes(self.epoch)
        elif action is Action.RELEASE:
            await self._release()
        elif action is Action.CLEAR_SWITCHOVER:
            await self._io(self.coord.clear_switchover)
        elif action is Action.RESTART_SERVICES:
            log.error("I am %s, active and paused, and my services are failing: restarting them", self.node)
            await self.actuator.restart_services(self.epoch)

    async def step_down(self, reason: str) -> None:
        """Release leadership on purpose (the agent is stopping): drain the
        front ends, stop every service, hand over cleanly."""
        if self.state is S.STANDBY and self.leader is None:
            return
        self._release_reason = reason
        self._pending_history.append(
            HistoryEntry(self.wall(), self.node, self.state.value, "stopped", self.epoch, reason)
        )
        await self._release()
        await self._publish()

    async def _release(self) -> None:
        drain = self._release_reason.startswith("switchover")
        stopped_at = await self.actuator.release(self.held_epoch, drain)
        leader = self.leader
        if leader is None and self.snapshot is not None and self.snapshot.holds_lock(self.node):
            leader = self.snapshot.leader
        if leader is not None:
            # Nothing here writes or serves now, so the next leader need not fence us.
            clean = LastActive(node=self.node, epoch=leader.epoch, clean=True, stopped_serving_at=stopped_at)
            try:
                await self._io(lambda: self.coord.release(leader, clean))
            except HaAgentError as exc:
                # The session is gone or going; the server deletes the znode.
                log.warning("could not delete the leader znode: %s", exc)
            self.leader = None
        await self.actuator.after_release(self.held_epoch)

    def _estimate_outage_start(self, snap: ClusterSnapshot) -> float | None:
        prev = snap.last_active
        if prev is None or prev.node == self.node:
            return None
        if prev.clean and prev.stopped_serving_at > 0:
            return prev.stopped_serving_at
        return self._last_seen_serving.get(prev.node)

    async def _publish(self) -> None:
        # Mid-takeover every ZooKeeper write delays the service; the next
        # stable state publishes the status and the pending history.
        if self.state in TRANSIENT_STATES or self.coord.session().state is not SessionState.CONNECTED:
            return
        status = NodeStatus(
            name=self.node,
            state=self.state.value,
            health=self.actuator.health().value,
            epoch=self.epoch,
            updated=self.wall(),
            sentence=self.describe(),
        )
        history = tuple(self._pending_history)
        try:
            await self._io(lambda: self.coord.publish_status(status))
            if history:
                await self._io(lambda: self.coord.append_history(history))
                del self._pending_history[: len(history)]
        except HaAgentError as exc:
            log.debug("status not published: %s", exc)

    def describe(self) -> str:
        snap = self.snapshot
        holds = snap is not None and snap.holds_lock(self.node)
        text = f"I am {self.node}, {self.state.value}"
        if self.epoch:
            text += f" with epoch {self.epoch}"
        text += ", lock held" if holds else ", lock not held"
        if snap is None:
            text += ", ZooKeeper unreachable"
        elif not holds and snap.leader is not None:
            text += f", {snap.leader.node} leads with epoch {snap.leader.epoch}"
        if snap is not None and snap.paused:
            text += ", paused"
        return text

    def sentence(self, old: AgentState, decision: Decision, error: str) -> str:
        text = self.describe()
        if decision.next_state is not old:
            text += f" (was {old.value}: {decision.reason})"
        elif decision.reason:
            text += f" ({decision.reason})"
        if decision.actions:
            text += "; did " + ", ".join(a.value for a in decision.actions)
        if error:
            text += f"; FAILED: {error}"
        return text

    def wants_immediate_tick(self) -> bool:
        return self.state in TRANSIENT_STATES or (self.state in LEADER_STATES and self.progress is Progress.FAILED)
