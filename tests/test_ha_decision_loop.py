"""The decision loop against the in-memory ZooKeeper and a fake node."""

from __future__ import annotations

import itertools

import pytest
import trio

from haagent.coordination import (
    ClusterSnapshot,
    LastActive,
    LeaderRecord,
    NodeStatus,
    SessionState,
    SwitchoverRequest,
)
from haagent.coordination_fake import FakeCoordination, FakeZooKeeper
from haagent.decision import DecisionLoop, Health, LocalFacts, Progress, decide
from haagent.states import TRANSITIONS, AgentState, IllegalTransition, check_transition, to_dot
from tests.ha_agent_fakes import Clock, FakeActuator

S = AgentState


class Node:
    def __init__(self, zk: FakeZooKeeper, name: str, clock: Clock) -> None:
        self.coord: FakeCoordination = zk.client()
        self.actuator = FakeActuator(clock)
        self.loop = DecisionLoop(
            name, self.coord, self.actuator, session_timeout=2.0, failed_cooldown=5.0, monotonic=clock, wall=clock
        )

    def settle(self) -> list[str]:
        """Tick until the loop stops asking for an immediate next tick."""

        async def run() -> list[str]:
            said = [await self.loop.tick()]
            for _ in range(10):
                if not self.loop.wants_immediate_tick():
                    break
                said.append(await self.loop.tick())
            return said

        return trio.run(run)


def st(node: Node) -> AgentState:
    """The loop's state, read through a call so mypy does not narrow it across ticks."""
    return node.loop.state


@pytest.fixture
def cluster() -> tuple[FakeZooKeeper, Clock, Node, Node]:
    clock = Clock()
    zk = FakeZooKeeper()
    return zk, clock, Node(zk, "node1", clock), Node(zk, "node2", clock)


def test_first_node_activates_and_says_so(cluster: tuple[FakeZooKeeper, Clock, Node, Node]) -> None:
    zk, _clock, n1, n2 = cluster
    said = n1.settle()
    assert st(n1) is S.ACTIVE
    assert said[-1].startswith("I am node1, active with epoch 1, lock held")
    assert n1.actuator.calls == ["activate 1"]  # nobody to fence on first activation
    assert n2.settle()[-1] == "I am node2, standby, lock not held, node1 leads with epoch 1"
    assert st(n2) is S.STANDBY
    # A steady tick does nothing and says exactly where the node stands.
    assert n1.settle() == ["I am node1, active with epoch 1, lock held"]
    assert zk.data.last_active == LastActive("node1", 1, clean=False, stopped_serving_at=0.0)


def test_takeover_after_session_expiry_fences_old_active(cluster: tuple[FakeZooKeeper, Clock, Node, Node]) -> None:
    zk, clock, n1, n2 = cluster
    n1.settle()
    n2.settle()
    clock.advance(1.0)
    n1.coord.expire()  # SIGKILL of node1's agent: the server drops its session
    said = n2.settle()
    assert st(n2) is S.ACTIVE and n2.loop.epoch == 2
    assert [p.node for p in n2.actuator.fenced] == ["node1"]
    assert n2.actuator.calls == ["fence node1", "activate 2"]
    assert any("vanished: process crash or ZooKeeper session loss" in s for s in said)
    # The old active learns it lost the lock and tears down.
    said1 = n1.settle()
    assert st(n1) is S.STANDBY
    assert "lock lost" in " ".join(said1)
    released = [h for h in zk.data.history if h.node == "node1" and h.from_state == "releasing"]
    assert [h.epoch for h in released] == [1]  # the epoch it held, not 0
    assert not n1.actuator.running and not n1.actuator.ip
    history = [(h.node, h.from_state, h.to_state, h.epoch) for h in zk.data.history]
    assert ("node2", "standby", "acquiring", 2) in history  # the epoch it acquired
    assert ("node2", "activating", "active", 2) in history
    entry = next(h for h in zk.data.history if h.node == "node2" and h.to_state == "active")
    # Downtime is measured from node1's last healthy heartbeat to node2 serving.
    assert entry.downtime_s == pytest.approx(1.0)


def test_suspended_stops_writes_then_resumes(cluster: tuple[FakeZooKeeper, Clock, Node, Node]) -> None:
    _zk, clock, n1, _n2 = cluster
    n1.settle()
    n1.coord.suspend()
    said = n1.settle()
    assert st(n1) is S.SUSPENDED
    assert (n1.actuator.writable, n1.actuator.ip) == (False, False)
    assert said[-1].startswith("I am node1, suspended with epoch 1, lock not held, ZooKeeper unreachable")
    clock.advance(0.5)
    n1.coord.reconnect()
    n1.settle()
    assert st(n1) is S.ACTIVE
    assert (n1.actuator.writable, n1.actuator.ip) == (True, True)
    assert n1.actuator.calls[-1] == "resume_writes 1"


def test_suspended_beyond_session_timeout_tears_down(cluster: tuple[FakeZooKeeper, Clock, Node, Node]) -> None:
    _zk, clock, n1, _n2 = cluster
    n1.settle()
    n1.coord.suspend()
    n1.settle()
    clock.advance(2.0)
    said = n1.settle()
    assert st(n1) is S.STANDBY
    assert "ZooKeeper session lost" in " ".join(said)
    assert not n1.actuator.running
    # The session (and the leader record) is gone, yet what ran under epoch 1 is released as such.
    assert n1.loop.epoch == 0 and n1.loop.held_epoch == 1
    assert n1.actuator.calls[-2:] == ["release 1 drain=False", "after_release 1"]


def test_pause_with_vacant_leader_waits_for_resume(cluster: tuple[FakeZooKeeper, Clock, Node, Node]) -> None:
    zk, _clock, n1, n2 = cluster
    n1.settle()
    n2.settle()
    n2.coord.set_paused(True)
    n2.settle()
    n1.coord.close()  # node1 gone for good
    for _ in range(3):
        n2.settle()
    assert zk.data.leader is None and st(n2) is S.PAUSED
    n2.coord.set_paused(False)
    n2.settle()
    n2.settle()
    assert st(n2) is S.ACTIVE and n2.loop.epoch == 2


def test_switchover_is_clean_and_leaves_no_request(cluster: tuple[FakeZooKeeper, Clock, Node, Node]) -> None:
    zk, clock, n1, n2 = cluster
    n1.settle()
    n2.settle()
    n2.actuator.state_of_health = Health.OK
    n2.settle()  # publishes a healthy standby status
    n2.actuator.state_of_health = Health.STOPPED
    n1.coord.request_switchover(SwitchoverRequest("node1", "node2", clock(), clock() + 30))
    said1 = n1.settle()
    assert "switchover to node2" in " ".join(said1)
    assert n1.actuator.calls[-2:] == ["release 1 drain=True", "after_release 1"]  # the epoch it held
    assert st(n1) is S.STANDBY
    # node1 must not grab the vacancy back while the request is pending.
    n1.settle()
    assert zk.data.leader is None
    clock.advance(0.3)
    n2.settle()
    assert st(n2) is S.ACTIVE and n2.loop.epoch == 2
    assert n2.actuator.fenced == []  # a clean release needs no fencing
    assert zk.data.switchover is None
    entry = next(h for h in zk.data.history if h.node == "node2" and h.to_state == "active")
    assert entry.downtime_s == pytest.approx(0.3)
    assert any(h.reason.startswith("switchover from node1") for h in zk.data.history)


def test_switchover_reservation_lapses_when_the_target_dies(cluster: tuple[FakeZooKeeper, Clock, Node, Node]) -> None:
    zk, clock, n1, n2 = cluster
    n1.settle()
    n2.actuator.state_of_health = Health.OK
    n2.settle()
    n1.coord.request_switchover(SwitchoverRequest("node1", "node2", clock(), clock() + 30))
    n1.settle()
    assert zk.data.leader is None
    n2.coord.close()  # the target dies before it takes over
    n1.settle()
    n1.settle()
    assert st(n1) is S.ACTIVE and n1.loop.epoch == 2


def test_switchover_waits_for_healthy_candidate(cluster: tuple[FakeZooKeeper, Clock, Node, Node]) -> None:
    _zk, clock, n1, n2 = cluster
    n1.settle()
    n2.actuator.state_of_health = Health.FAILING
    n2.settle()
    n1.coord.request_switchover(SwitchoverRequest("node1", None, clock(), clock() + 30))
    n1.settle()
    assert st(n1) is S.ACTIVE  # no healthy standby: the active stays
    clock.advance(31)
    n1.settle()
    assert _zk.data.switchover is None  # expired requests are removed


def test_failed_health_check_releases_then_cools_down(cluster: tuple[FakeZooKeeper, Clock, Node, Node]) -> None:
    zk, clock, n1, n2 = cluster
    n1.settle()
    n2.settle()
    n1.actuator.state_of_health = Health.FAILING
    said = n1.settle()
    assert "failed health check" in " ".join(said)
    assert st(n1) is S.FAILED
    n2.settle()
    assert st(n2) is S.ACTIVE and n2.loop.epoch == 2
    assert n2.actuator.fenced == []  # node1 released cleanly
    clock.advance(5.0)
    n1.settle()
    assert st(n1) is S.STANDBY
    reasons = [h.reason for h in zk.data.history if h.node == "node1"]
    assert "failed health check" in reasons


def test_fencing_failure_releases_leadership(cluster: tuple[FakeZooKeeper, Clock, Node, Node]) -> None:
    zk, _clock, n1, n2 = cluster
    n1.settle()
    n2.settle()
    n1.coord.expire()
    n2.actuator.fail_fence = True
    said = n2.settle()
    assert "FAILED: fencing method refused" in " ".join(said)
    assert st(n2) is S.FAILED
    assert "activate 2" not in n2.actuator.calls  # never activated unfenced
    assert zk.data.leader is None


def test_only_one_of_two_racing_nodes_acquires(cluster: tuple[FakeZooKeeper, Clock, Node, Node]) -> None:
    zk, _clock, n1, n2 = cluster

    async def race() -> None:
        # Both read the same vacant snapshot before either acquires.
        await n1.loop.tick()
        await n2.loop.tick()

    n1_first = n1.coord.snapshot()
    assert n1_first.leader is None
    trio.run(race)
    states = {st(n1), st(n2)}
    assert S.ACQUIRING in states or S.FENCING in states
    n1.settle()
    n2.settle()
    assert sorted([st(n1).value, st(n2).value]) == ["active", "standby"]
    assert zk.data.epoch == 1


def test_session_loss_interrupts_a_hanging_activation(cluster: tuple[FakeZooKeeper, Clock, Node, Node]) -> None:
    _zk, _clock, n1, _n2 = cluster
    n1.actuator.hang_activate = True
    said: list[str] = []

    async def run() -> None:
        async def ticks() -> None:
            for _ in range(3):  # acquiring, fencing, activating (hangs)
                said.append(await n1.loop.tick())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticks)
            await trio.sleep(0.5)
            assert st(n1) is S.ACTIVATING
            n1.coord.suspend()
            n1.loop.interrupt_if_uncertain()
        said.append(await n1.loop.tick())

    trio.run(run)
    assert "FAILED: interrupted: ZooKeeper session suspended" in said[-2]
    assert st(n1) is S.SUSPENDED
    assert n1.actuator.calls[-1] == "stop_writes 1"


def test_transition_table_rejects_unlisted_moves() -> None:
    check_transition(S.STANDBY, S.ACQUIRING)
    with pytest.raises(IllegalTransition):
        check_transition(S.STANDBY, S.ACTIVE)
    assert "standby -> acquiring;" in to_dot()


def _snapshots(me: str) -> list[ClusterSnapshot | None]:
    mine = LeaderRecord(me, 3, 7, 0.0)
    other = LeaderRecord("other", 3, 9, 0.0)
    out: list[ClusterSnapshot | None] = [None]
    for leader, paused, last in itertools.product(
        (None, mine, other), (False, True), (None, LastActive("other", 2, False, 0.0))
    ):
        out.append(ClusterSnapshot(7, leader, 3, (), paused, None, last))
    return out


def test_decide_only_makes_moves_in_the_table() -> None:
    """Exhaustive over states x session x progress x health x snapshot shapes."""
    count = 0
    for state, session, progress, health, age, snap in itertools.product(
        AgentState, SessionState, Progress, Health, (0.0, 10.0), _snapshots("me")
    ):
        facts = LocalFacts("me", state, session, progress, health, age, 2.0, 5.0, 0.0, False)
        decision = decide(facts, snap)
        check_transition(state, decision.next_state)
        if decision.next_state in (S.ACTIVE, S.ACTIVATING, S.FENCING):
            # Never lead further without a ZooKeeper answer saying we hold the lock.
            assert snap is not None and snap.holds_lock("me")
            assert session is SessionState.CONNECTED
        count += 1
    assert count > 1000
    assert set(TRANSITIONS) == set(AgentState)


def test_first_activation_fences_every_peer_not_standing_by() -> None:
    """Issue 14: with /last_active missing nobody knows who wrote last, so the
    first activation fences each configured peer without a live standby agent."""
    clock = Clock()
    zk = FakeZooKeeper()
    n1 = Node(zk, "node1", clock)
    n1.loop.peers = ("node2", "node3", "node4")
    # node2's agent is live and standing by; node3 has no agent at all;
    # node4's heartbeat claims it is active (stale: the lock says otherwise).
    zk.client().publish_status(NodeStatus("node2", "standby", "ok", 0, clock(), "standing by"))
    zk.client().publish_status(NodeStatus("node4", "active", "ok", 3, clock(), "active"))
    # Peers started with this agent get a session timeout to say they are up.
    assert n1.settle()[-1].endswith("(first activation: waiting for the other agents' heartbeats)")
    assert st(n1) is S.STANDBY
    clock.advance(2.0)
    n1.settle()
    assert st(n1) is S.ACTIVE
    assert [p.node for p in n1.actuator.fenced] == ["node3", "node4"]
    assert n1.actuator.calls == ["fence node3", "fence node4", "activate 1"]


def test_paused_active_restarts_failing_services_instead_of_leaving_them_down(
    cluster: tuple[FakeZooKeeper, Clock, Node, Node],
) -> None:
    """Issue 14: maintenance mode forbids failover, not repair."""
    _zk, _clock, n1, n2 = cluster
    n1.settle()
    n2.settle()
    n1.coord.set_paused(True)
    n1.settle()
    n1.actuator.state_of_health = Health.FAILING
    said = n1.settle()
    assert "services failing while paused: restarting them" in " ".join(said)
    assert n1.actuator.calls[-1] == "restart_services 1"
    assert st(n1) is S.ACTIVE and n1.loop.epoch == 1  # leadership kept, no failover
    assert n1.actuator.running and n1.actuator.health() is Health.OK
