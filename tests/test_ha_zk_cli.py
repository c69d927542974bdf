"""`mailha zk up|status|down` as an operator runs them: separate processes,
the ensemble outliving `up`, `down` finding it again from the config alone."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest
import yaml

from lab.zk_ensemble import Ensemble
from tests.zk_fixtures import loopback_zk_config

pytestmark = pytest.mark.integration


def mailha(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailha.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_zk_up_status_down_from_the_command_line(tmp_path: pathlib.Path) -> None:
    zk = loopback_zk_config(tmp_path / "zk")
    config = tmp_path / "cluster.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "nodes": [{"name": "a", "address": "192.0.2.11/29"}],
                "zookeeper": {
                    "data_dir": str(zk.data_dir),
                    "members": [
                        {
                            "id": m.id,
                            "host": m.host,
                            "client_port": m.client_port,
                            "peer_port": m.peer_port,
                            "election_port": m.election_port,
                        }
                        for m in zk.members
                    ],
                },
            }
        )
    )
    try:
        up = mailha("zk", "up", "--config", str(config))
        assert up.returncode == 0, up.stderr
        assert sorted(line.split(": ")[1].split()[0] for line in up.stdout.splitlines()) == [
            "follower",
            "follower",
            "leader",
        ]
        status = mailha("zk", "status", "--json", "--config", str(config))
        assert status.returncode == 0
        members = json.loads(status.stdout)["members"]
        assert [m["serving"] for m in members] == [True, True, True]
        pids = [m["pid"] for m in members]
        assert all(isinstance(p, int) for p in pids)
        again = mailha("zk", "up", "--config", str(config))
        assert again.returncode == 0
        assert [int(line.split("pid ")[1].rstrip(")")) for line in again.stdout.splitlines()] == pids
        down = mailha("zk", "down", "--config", str(config))
        assert down.stdout.strip() == "stopped 3 ZooKeeper member(s)"
        assert mailha("zk", "down", "--config", str(config)).stdout.strip() == "stopped 0 ZooKeeper member(s)"
        after = mailha("zk", "status", "--config", str(config))
        assert after.returncode == 1
        assert after.stdout.count(": down") == 3
    finally:
        Ensemble(zk).stop()


def test_bad_config_is_named(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text("nodes: []\n")
    result = mailha("zk", "up", "--config", str(config))
    assert result.returncode == 2
    assert "nodes: at least one node is required" in result.stderr
