"""Running real agents in a test lab (tests/ha_lab_fixtures.py): a cluster.yaml
for the lab, agents started inside their namespaces, and probes from the host."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import yaml

from haagent import floating_ip, netns
from haagent.coordination import ClusterSnapshot
from haagent.coordination_kazoo import KazooCoordination
from haagent.supervisor import greets
from haagent.zk_client import make_client
from nodeconf.config import ClusterConfig, StorageConfig
from tests.ha_lab_fixtures import Lab, lab_config

ROOT = pathlib.Path(__file__).resolve().parent.parent


def cluster_yaml(cfg: ClusterConfig) -> dict[str, object]:
    zk = cfg.zookeeper
    return {
        "name": cfg.name,
        "bridge": cfg.bridge,
        "bridge_address": str(cfg.bridge_address),
        "nodes": [{"name": n.name, "address": str(n.address), "namespace": n.namespace} for n in cfg.nodes],
        "floating_ip": {
            "address": str(cfg.floating_ip.address),
            "interface": cfg.floating_ip.interface,
            "garp_count": cfg.floating_ip.garp_count,
            "garp_interval": cfg.floating_ip.garp_interval,
        },
        "zookeeper": {
            "members": [dataclasses.asdict(m) for m in zk.members],
            "chroot": zk.chroot,
            "session_timeout": zk.session_timeout,
            "tick_time_ms": zk.tick_time_ms,
            "auth_user": zk.auth_user,
            "auth_password_file": str(zk.secret_file),
            "data_dir": str(zk.data_dir),
        },
        "storage": {
            "path": str(cfg.storage.path),
            "activate": cfg.storage.activate,
            "deactivate": cfg.storage.deactivate,
        },
        "ports": dataclasses.asdict(cfg.ports),
        "fencing": list(cfg.fencing),
        "runtime_dir": str(cfg.runtime_dir),
        "health_interval": cfg.health_interval,
        "service_user": cfg.service_user,
    }


class AgentLab:
    """A lab whose nodes run `mailha agent` in their namespaces."""

    def __init__(
        self, lab: Lab, tmp: pathlib.Path, chroot: str, *, service_user: str | None = None, web_port: int = 0
    ) -> None:
        """web_port: every agent serves the web app there (0: no web app)."""
        self.tmp = tmp
        self.cfg = dataclasses.replace(
            lab.cfg,
            ports=dataclasses.replace(lab.cfg.ports, web=web_port),
            storage=StorageConfig(path=tmp / "shared"),
            runtime_dir=tmp / "run",
            zookeeper=dataclasses.replace(lab.cfg.zookeeper, chroot=chroot),
            service_user=service_user or lab.cfg.service_user,
        )
        self.config_path = tmp / "cluster.yaml"
        self.config_path.write_text(yaml.safe_dump(cluster_yaml(self.cfg)))
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.clear_floating_ip()  # an earlier test's active may have left it behind
        client = make_client(self.cfg.zookeeper)
        client.start(timeout=15)
        self.coord = KazooCoordination(client, "")
        self.coord.ensure_layout()

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.cfg.nodes]

    def start_agent(self, node: str) -> None:
        ns = self.cfg.node(node).namespace
        log = open(self.tmp / f"agent-{node}.log", "ab")  # noqa: SIM115 - handed to the child
        argv = [sys.executable, "-m", "mailha.cli", "agent", "--config", str(self.config_path), "--node", node]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.agents[node] = netns.popen_in_netns(ns, argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        log.close()

    def clear_floating_ip(self) -> None:
        for node in self.cfg.nodes:
            floating_ip.remove_in_namespace(self.cfg.floating_ip, node.namespace)

    def kill_node(self, node: str) -> int:
        """SIGKILL every process in the node's namespace (agent, store, front ends)."""
        pids = netns.pids_in_netns(self.cfg.node(node).namespace)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def snapshot(self) -> ClusterSnapshot:
        return self.coord.snapshot()

    def holders(self) -> list[str]:
        return floating_ip.holders(self.cfg)

    def serves(self) -> bool:
        return greets(str(self.cfg.floating_ip.address.ip), self.cfg.ports.lmtp, b"220 ", timeout=0.3)

    def active(self) -> str | None:
        snap = self.snapshot()
        if snap.leader is None:
            return None
        st = snap.node_status(snap.leader.node)
        return snap.leader.node if st is not None and st.state == "active" else None

    def wait_for(self, what: str, cond: Callable[[], bool], timeout: float = 30.0, every: float = 0.02) -> float:
        t0 = time.monotonic()
        while not cond():
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")
            time.sleep(every)
        return time.monotonic() - t0

    def logs(self) -> str:
        out = []
        for path in sorted(self.tmp.glob("agent-*.log")):
            out.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-3000:])
        # The services' own logs say why one would not start (runtime_dir/NODE/log/*.log).
        for path in sorted(self.cfg.runtime_dir.glob("*/log/*.log")):
            out.append(f"--- {path.parent.parent.name}/{path.name}\n" + path.read_text(errors="replace")[-1500:])
        return "\n".join(out)

    def stop(self) -> None:
        for node in self.names:
            self.kill_node(node)
        for proc in self.agents.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.clear_floating_ip()
        self.coord.close()


@pytest.fixture(scope="module")
def agent_lab_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One topology + ensemble per test module (each test gets its own chroot)."""
    lab = Lab(lab_config(tmp_path_factory.mktemp("agentlab")))
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


@pytest.fixture
def agent_lab(agent_lab_base: Lab, tmp_path: pathlib.Path) -> Iterator[AgentLab]:
    lab = AgentLab(agent_lab_base, tmp_path, f"/agent-{uuid.uuid4().hex[:12]}")
    try:
        yield lab
    finally:
        lab.stop()
