"""pytest fixtures for a real 3-member ZooKeeper ensemble on loopback.

Modelled on kazoo's testing harness (kazoo/testing/harness.py): one ensemble
per test session, started by the same code as `mailha zk up`
(lab/zk_ensemble.py), with free loopback ports in a temp directory; each
test gets its own chroot so tests do not see each other's znodes.

Fixtures:
    zk_session_ensemble  the session's ZkTestEnsemble (started once)
    zk_ensemble          the same, but every member is running again after the test
    zk_config            a ZooKeeperConfig for the ensemble with a fresh chroot
    zk_client            a started kazoo client from haagent.zk_client.make_client(zk_config)

Helpers on ZkTestEnsemble: expire_session(client), stop_member(i),
start_member(i), leader_member(), hosts.

Members are started with PDEATHSIG so no JVM outlives a killed pytest; the
signal follows the *thread* that started a member, so call start_member
from the test's own thread, not from a short-lived worker thread.
"""

from __future__ import annotations

import dataclasses
import pathlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient, KazooState

from haagent.zk_client import make_client
from haagent.zk_probe import MemberStatus
from lab.zk_ensemble import Ensemble
from nodeconf.config import ZkMember, ZooKeeperConfig
from nodeconf.secret_file import ensure_secret
from tests.child_processes import session_owned

MEMBERS = 3


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now on 127.0.0.1 (all held open at once, so distinct)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def loopback_zk_config(data_dir: pathlib.Path, members: int = MEMBERS) -> ZooKeeperConfig:
    """A ZooKeeperConfig with `members` members on 127.0.0.1 and free ports."""
    ports = free_ports(3 * members)
    ensure_secret(data_dir / "secret")
    return ZooKeeperConfig(
        members=tuple(
            ZkMember(
                id=i + 1,
                host="127.0.0.1",
                client_port=ports[3 * i],
                peer_port=ports[3 * i + 1],
                election_port=ports[3 * i + 2],
            )
            for i in range(members)
        ),
        chroot="/mailha",
        session_timeout=2.0,
        data_dir=data_dir,
    )


class ZkTestEnsemble:
    """A running ensemble plus kazoo-harness-style helpers."""

    def __init__(self, cfg: ZooKeeperConfig) -> None:
        self.cfg = cfg
        self.ensemble = Ensemble(cfg, die_with_parent=True)
        self.started_in: float | None = None

    @property
    def hosts(self) -> str:
        return self.cfg.hosts

    def start(self, timeout: float = 60.0) -> list[MemberStatus]:
        t0 = time.monotonic()
        statuses = self.ensemble.start(timeout)
        self.started_in = time.monotonic() - t0
        return statuses

    def stop(self) -> None:
        self.ensemble.stop()

    def member_pids(self) -> set[int]:
        return {pid for m in self.cfg.members if (pid := self.ensemble.pid(m.id)) is not None}

    def stop_member(self, member_id: int) -> None:
        self.ensemble.stop_member(member_id)

    def start_member(self, member_id: int, timeout: float = 30.0) -> MemberStatus:
        return self.ensemble.start_member(member_id, timeout)

    def leader_member(self) -> int | None:
        return self.ensemble.leader()

    def ensure_all_running(self, timeout: float = 30.0) -> None:
        self.ensemble.start(timeout)  # idempotent: only stopped members are spawned

    def config_with_fresh_chroot(self) -> ZooKeeperConfig:
        return dataclasses.replace(self.cfg, chroot=f"/test-{uuid.uuid4().hex[:12]}")

    def expire_session(self, client: KazooClient, timeout: float = 10.0) -> None:
        """Expire `client`'s session the way ZooKeeper would after a partition.

        A second client joins the same session (id and password) and closes
        it; the server then expires it, and `client` sees LOST when it next
        talks to the ensemble. Returns once `client` has seen LOST.
        """
        client_id = client.client_id
        if client_id is None:
            raise RuntimeError("expire_session: client has no session (not started?)")
        lost = threading.Event()

        def listener(state: str) -> bool:
            if state == KazooState.LOST:
                lost.set()
                return True  # remove this listener
            return False

        client.add_listener(listener)
        other = KazooClient(hosts=self.hosts, client_id=client_id, timeout=self.cfg.session_timeout)
        try:
            other.start(timeout=timeout)
            other.stop()
        finally:
            other.close()
        if not lost.wait(timeout):
            client.remove_listener(listener)
            raise TimeoutError(f"client did not see its session expire within {timeout} s")


@pytest.fixture(scope="session")
def zk_session_ensemble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZkTestEnsemble]:
    ens = ZkTestEnsemble(loopback_zk_config(tmp_path_factory.mktemp("zk")))
    session_owned(ens.member_pids)  # members a test stopped are restarted by later modules
    try:
        ens.start()
        yield ens
    finally:
        ens.stop()


@pytest.fixture
def zk_ensemble(zk_session_ensemble: ZkTestEnsemble) -> Iterator[ZkTestEnsemble]:
    """The session ensemble; members a test stopped are running again afterwards."""
    yield zk_session_ensemble
    zk_session_ensemble.ensure_all_running()


@pytest.fixture
def zk_config(zk_session_ensemble: ZkTestEnsemble) -> ZooKeeperConfig:
    return zk_session_ensemble.config_with_fresh_chroot()


@pytest.fixture
def zk_client(zk_config: ZooKeeperConfig) -> Iterator[KazooClient]:
    client = make_client(zk_config)
    client.start(timeout=15)
    try:
        yield client
    finally:
        client.stop()
        client.close()
