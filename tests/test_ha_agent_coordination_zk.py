"""KazooCoordination against the real 3-member ensemble (tests/zk_fixtures.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

from haagent import coordination_kazoo
from haagent.coordination import ClusterSnapshot, HistoryEntry, LastActive, NodeStatus, SessionState, SwitchoverRequest
from haagent.coordination_kazoo import KazooCoordination
from haagent.errors import CoordinationUnavailable, LeadershipTaken, SwitchoverRejected
from haagent.zk_client import make_client
from nodeconf.config import ZooKeeperConfig
from tests.zk_fixtures import ZkTestEnsemble

pytestmark = pytest.mark.integration


@pytest.fixture
def pair(zk_config: ZooKeeperConfig) -> Iterator[tuple[KazooCoordination, KazooCoordination]]:
    coords = []
    for _ in range(2):
        client = make_client(zk_config)
        client.start(timeout=15)
        coord = KazooCoordination(client, "")
        coord.ensure_layout()
        coords.append(coord)
    try:
        yield coords[0], coords[1]
    finally:
        for c in coords:
            c.close()


def fresh(coord: KazooCoordination) -> ClusterSnapshot:
    """A snapshot that sees every write acknowledged to any client: ZooKeeper
    only promises read-your-writes per client, so catch up with the leader first."""
    coord.client.sync("/")
    return coord.snapshot()


def test_acquire_is_one_transaction_with_a_fresh_epoch(pair: tuple[KazooCoordination, KazooCoordination]) -> None:
    a, b = pair
    snap = a.snapshot()
    assert snap.leader is None and snap.epoch_counter == 0
    leader = a.acquire("node1", snap.epoch_counter)
    assert leader.epoch == 1
    with pytest.raises(LeadershipTaken):
        b.acquire("node2", 1)  # the leader znode exists
    with pytest.raises(LeadershipTaken):
        b.acquire("node2", 0)  # stale counter
    snap_b = fresh(b)
    assert snap_b.epoch_counter == 1, "a failed acquisition must not move the epoch"
    assert snap_b.leader == leader and not snap_b.holds_lock("node2") and a.snapshot().holds_lock("node1")
    # Not ours: releasing does nothing.
    b.release(leader, LastActive("node2", 9, True, 0.0))
    assert fresh(b).leader == leader
    a.release(leader, LastActive("node1", 1, True, 123.0))
    after = fresh(b)
    assert after.leader is None and after.last_active == LastActive("node1", 1, True, 123.0)
    assert b.acquire("node2", after.epoch_counter).epoch == 2


def test_session_expiry_frees_the_leadership_and_wakes(
    zk_session_ensemble: ZkTestEnsemble, pair: tuple[KazooCoordination, KazooCoordination]
) -> None:
    a, b = pair
    woke = threading.Event()
    a.set_waker(woke.set)
    leader = a.acquire("node1", 0)
    a.publish_status(NodeStatus("node1", "active", "ok", 1, 1.0, "I am node1"))
    assert [s.name for s in fresh(b).nodes] == ["node1"]
    woke.clear()
    zk_session_ensemble.expire_session(a.client)
    assert woke.wait(5)
    snap = fresh(b)
    assert snap.leader is None and snap.nodes == ()  # ephemeral records are gone
    # The expired holder can never write as leader again, whether its client
    # has a new session yet (LeadershipTaken) or not (CoordinationUnavailable).
    with pytest.raises((LeadershipTaken, CoordinationUnavailable)):
        a.set_last_active(leader, LastActive("node1", 1, False, 0.0))
    assert a.session().state in (SessionState.LOST, SessionState.CONNECTED)


def test_switchover_pause_and_bounded_history(
    pair: tuple[KazooCoordination, KazooCoordination], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    req = SwitchoverRequest("node1", "node2", 1.0, 99.0)
    a.request_switchover(req)
    with pytest.raises(SwitchoverRejected):
        b.request_switchover(req)
    assert fresh(b).switchover == req
    b.clear_switchover()
    b.clear_switchover()  # idempotent
    a.set_paused(True)
    assert fresh(b).paused
    a.set_paused(False)
    assert not fresh(b).paused
    monkeypatch.setattr(coordination_kazoo, "HISTORY_LIMIT", 5)
    entries = tuple(HistoryEntry(float(i), "node1", "standby", "acquiring", i, "test", None) for i in range(8))
    a.append_history(entries[:4])
    a.append_history(entries[4:])
    b.client.sync("/")
    assert b.history() == entries[3:]


def test_znodes_are_unreadable_without_the_digest_credentials(
    zk_config: ZooKeeperConfig, pair: tuple[KazooCoordination, KazooCoordination]
) -> None:
    a, _b = pair
    a.acquire("node1", 0)
    anon = KazooClient(hosts=zk_config.hosts + zk_config.chroot, timeout=zk_config.session_timeout)
    anon.start(timeout=15)
    try:
        with pytest.raises(NoAuthError):
            anon.get("/leader")
        with pytest.raises(NoAuthError):
            anon.set("/epoch", b"100")
    finally:
        anon.stop()
        anon.close()
