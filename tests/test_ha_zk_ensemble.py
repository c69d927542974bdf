"""The real ZooKeeper ensemble (lab/zk_ensemble.py) and its test helpers."""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys
import threading
import time

import pytest
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NoAuthError

from haagent.zk_client import make_client
from lab import zk_ensemble
from nodeconf.config import ZooKeeperConfig
from tests.zk_fixtures import ZkTestEnsemble, loopback_zk_config

pytestmark = pytest.mark.integration


def test_render_config_allows_a_two_second_session(tmp_path: pathlib.Path) -> None:
    cfg = loopback_zk_config(tmp_path)
    text = zk_ensemble.render_config(cfg, cfg.members[0], zk_ensemble.MemberFiles(tmp_path / "m1"))
    settings = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    assert int(settings["minSessionTimeout"]) <= 2000 <= int(settings["maxSessionTimeout"])
    assert settings["tickTime"] == "200"
    assert settings["admin.enableServer"] == "false"
    assert set(settings["4lw.commands.whitelist"].split(",")) >= {"ruok", "srvr", "stat", "mntr"}
    assert [k for k in settings if k.startswith("server.")] == ["server.1", "server.2", "server.3"]


def test_every_member_answers_and_one_leads(zk_ensemble: ZkTestEnsemble) -> None:
    statuses = zk_ensemble.ensemble.status()
    assert [st.id for st in statuses] == [1, 2, 3]
    assert all(st.ok and st.pid is not None for st in statuses)
    modes = sorted(st.mode or "" for st in statuses)
    assert modes == ["follower", "follower", "leader"]
    assert zk_ensemble.leader_member() == next(st.id for st in statuses if st.mode == "leader")
    m = zk_ensemble.cfg.members[0]
    assert zk_ensemble.ensemble.pid(m.id) is not None
    assert zk_ensemble.started_in is not None and zk_ensemble.started_in < 30


def test_client_session_is_two_seconds_and_znodes_carry_our_acl(
    zk_client: KazooClient, zk_config: ZooKeeperConfig
) -> None:
    # ZooKeeper negotiates the session timeout within [min, max]; 2 s must be granted.
    assert zk_client._session_timeout == 2000
    zk_client.create("/epoch", b"1")
    acl, _ = zk_client.get_acls("/epoch")
    assert [(a.id.scheme, a.id.id.split(":")[0], a.perms) for a in acl] == [("digest", zk_config.auth_user, 31)]
    # Someone without the digest credentials can neither read nor write.
    stranger = KazooClient(hosts=zk_config.hosts + zk_config.chroot)
    stranger.start(timeout=15)
    try:
        with pytest.raises(NoAuthError):
            stranger.get("/epoch")
        with pytest.raises(NoAuthError):
            stranger.create("/intruder", b"")
    finally:
        stranger.stop()
        stranger.close()


def test_make_client_creates_a_nested_chroot(zk_session_ensemble: ZkTestEnsemble) -> None:
    cfg = zk_session_ensemble.config_with_fresh_chroot()
    nested = dataclasses.replace(cfg, chroot=cfg.chroot + "/deeper/still")
    client = make_client(nested)
    client.start(timeout=15)
    try:
        client.create("/x", b"v")
        assert client.get("/x")[0] == b"v"
    finally:
        client.stop()
        client.close()


def test_expire_session_makes_the_client_lose_its_ephemerals(
    zk_ensemble: ZkTestEnsemble, zk_client: KazooClient, zk_config: ZooKeeperConfig
) -> None:
    states: list[str] = []
    zk_client.add_listener(states.append)
    zk_client.create("/leader", b"me", ephemeral=True)
    old_session = zk_client.client_id
    zk_ensemble.expire_session(zk_client)
    assert KazooState.LOST in states
    # kazoo opens a fresh session by itself; the ephemeral of the old one is gone.
    connected = threading.Event()
    if zk_client.connected:
        connected.set()
    zk_client.add_listener(lambda s: connected.set() if s == KazooState.CONNECTED else None)
    assert connected.wait(10)
    assert zk_client.client_id != old_session
    assert zk_client.exists("/leader") is None


def test_stopping_a_follower_keeps_quorum_and_it_rejoins(zk_ensemble: ZkTestEnsemble, zk_client: KazooClient) -> None:
    leader = zk_ensemble.leader_member()
    follower = next(m.id for m in zk_ensemble.cfg.members if m.id != leader)
    zk_ensemble.stop_member(follower)
    assert zk_ensemble.ensemble.pid(follower) is None
    assert not zk_ensemble.ensemble.files(follower).pid_file.exists()
    zk_client.create("/during", b"2 of 3")
    status = zk_ensemble.start_member(follower)
    assert status.mode == "follower"
    assert zk_client.get("/during")[0] == b"2 of 3"


def test_stopping_the_leader_elects_another(zk_ensemble: ZkTestEnsemble, zk_client: KazooClient) -> None:
    old = zk_ensemble.leader_member()
    assert old is not None
    zk_ensemble.stop_member(old)
    others = [m.id for m in zk_ensemble.cfg.members if m.id != old]
    statuses = zk_ensemble.ensemble.wait_serving(others, timeout=30)
    assert sorted(st.mode or "" for st in statuses) == ["follower", "leader"]
    new = zk_ensemble.leader_member()
    assert new in others
    zk_client.ensure_path("/after-election")
    zk_ensemble.start_member(old)
    assert zk_ensemble.leader_member() == new


def test_down_finds_members_without_pid_files_and_is_idempotent(tmp_path: pathlib.Path) -> None:
    # A one-member ensemble of its own: this test kills everything it starts.
    ens = zk_ensemble.Ensemble(loopback_zk_config(tmp_path, members=1))
    statuses = ens.start()
    assert statuses[0].mode == "standalone"
    pid = statuses[0].pid
    assert pid is not None
    assert ens.start()[0].pid == pid  # up twice: same process
    # The starter "crashed" and lost its pid file: down still finds the JVM.
    ens.files(1).pid_file.unlink()
    assert ens.pid(1) == pid
    assert ens.stop() == 1
    assert ens.pid(1) is None
    assert not pathlib.Path(f"/proc/{pid}").exists() or zk_ensemble.MAIN_CLASS not in zk_ensemble._cmdline(pid)
    assert ens.stop() == 0
    assert ens.status()[0].ok is False


def test_fixture_members_die_with_the_process_that_started_them(tmp_path: pathlib.Path) -> None:
    script = f"""
import pathlib, sys
sys.path.insert(0, {str(pathlib.Path(__file__).resolve().parent.parent)!r})
from lab.zk_ensemble import Ensemble
from tests.zk_fixtures import loopback_zk_config
ens = Ensemble(loopback_zk_config(pathlib.Path(sys.argv[1]), members=1), die_with_parent=True)
print(ens.start()[0].pid, flush=True)
sys.stdin.readline()
"""
    starter = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert starter.stdout is not None and starter.stdin is not None
    pid = int(starter.stdout.readline())
    assert zk_ensemble.MAIN_CLASS in zk_ensemble._cmdline(pid)
    starter.kill()  # no teardown runs: the kernel must take the JVM down
    starter.wait()
    starter.stdin.close()
    starter.stdout.close()
    deadline = time.monotonic() + 10
    while zk_ensemble.MAIN_CLASS in zk_ensemble._cmdline(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert zk_ensemble.MAIN_CLASS not in zk_ensemble._cmdline(pid)
