"""Issue 9 item 11: no built-in ZooKeeper secret; a generated one lives in a 0600
file named by cluster.yaml; ZooKeeper's directories are owner-only."""

from __future__ import annotations

import os
import pathlib
import stat
import subprocess
import sys

import pytest
from kazoo.client import KazooClient

from nodeconf.config import ConfigError, ZooKeeperConfig, load
from nodeconf.secret_file import ensure_secret
from tests.store_fixtures import ROOT
from tests.zk_fixtures import ZkTestEnsemble

MINIMAL = """\
bridge_address: 192.0.2.9/29
nodes:
  - {name: node1, address: 192.0.2.11/29, namespace: mailha-node1}
  - {name: node2, address: 192.0.2.12/29, namespace: mailha-node2}
floating_ip: {address: 192.0.2.10/29}
zookeeper:
  members:
    - {id: 1, host: 192.0.2.9, client_port: 2181, peer_port: 2888, election_port: 3888}
  data_dir: DATA
"""


def mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def write_config(tmp_path: pathlib.Path, extra: str = "") -> pathlib.Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(MINIMAL.replace("DATA", str(tmp_path / "zk")) + extra)
    return path


def test_no_secret_in_the_code_or_the_shipped_config(tmp_path: pathlib.Path) -> None:
    cfg = load(write_config(tmp_path)).zookeeper
    with pytest.raises(ConfigError, match=r"no secret file .*zk/secret .*cluster up"):
        cfg.auth_password()
    shipped = (ROOT / "cluster.yaml").read_text()
    assert "auth_password:" not in shipped and "auth_password_file: /var/lib/mailha/zk/secret" in shipped
    assert load(ROOT / "cluster.yaml").zookeeper.secret_file == pathlib.Path("/var/lib/mailha/zk/secret")
    assert "mailha-demo-secret" not in (ROOT / "nodeconf" / "config.py").read_text()


def test_a_password_inline_in_cluster_yaml_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match=r"zookeeper.auth_password: .*auth_password_file"):
        load(write_config(tmp_path, "  auth_password: hunter2\n"))


def test_agent_without_a_secret_refuses_clearly(tmp_path: pathlib.Path) -> None:
    config = write_config(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "mailha.cli", "agent", "--config", str(config), "--node", "node1"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 2, done.stderr
    assert "no secret file" in done.stderr and str(tmp_path / "zk" / "secret") in done.stderr


def test_generated_secret_is_random_and_owner_only(tmp_path: pathlib.Path) -> None:
    a, b = tmp_path / "a" / "secret", tmp_path / "b" / "secret"
    assert ensure_secret(a) and ensure_secret(b)
    assert not ensure_secret(a)  # kept, never regenerated
    assert mode(a) == 0o600 and mode(a.parent) == 0o700
    assert a.read_text() != b.read_text() and len(a.read_text().strip()) >= 40
    cfg = ZooKeeperConfig(members=(), auth_password_file=a)
    assert cfg.auth_password() == a.read_text().strip()
    os.chmod(a, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        cfg.auth_password()


def test_ensemble_generates_the_secret_and_keeps_its_directories_private(
    zk_ensemble: ZkTestEnsemble, zk_client: KazooClient
) -> None:
    cfg = zk_ensemble.cfg
    assert mode(cfg.secret_file) == 0o600
    assert zk_client.connected  # the fixtures' clients authenticate with the generated secret
    for member in cfg.members:
        root = cfg.data_dir / f"member{member.id}"
        for d in (cfg.data_dir, root, root / "data"):
            assert mode(d) == 0o700, d
        for path in root.rglob("*"):  # zoo.cfg, zk.pid, zk.log, myid, snapshots, transaction logs
            assert mode(path) & 0o077 == 0, f"{path} {oct(mode(path))}"
