"""`mailha cluster up|down` orchestration (lab/cluster.py) on real
namespaces and a real ensemble.

The orchestration is tested with a stand-in agent (a few lines below that
takes the floating IP on the first node and greets like IMAP) so these
tests do not depend on the agent's progress; the end-to-end test with the
real agent runs once `mailha agent` exists.
"""

from __future__ import annotations

import io
import os
import pathlib
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from haagent import demo_tls, netns
from lab import cluster
from lab.zk_ensemble import Ensemble
from nodeconf import paths
from nodeconf.config import ClusterConfig
from tests.ha_lab_fixtures import Lab, lab_config
from tests.test_ha_netns_topology import ours_in_system

pytestmark = [pytest.mark.integration, pytest.mark.root]

# Stand-in agent: the first node takes the floating IP and greets on the IMAP
# port; every agent leaves a child in its own session (like the real agent's
# services) so `down` must find it through the namespace.
FAKE_AGENT = """
import socket, subprocess, sys
from nodeconf import config
cfg = config.load(sys.argv[1]); node = sys.argv[2]; port = int(sys.argv[3]); greeting = sys.argv[4].encode()
subprocess.Popen(["sleep", "300"], start_new_session=True)
if node == cfg.nodes[0].name:
    subprocess.run(["ip", "addr", "add", str(cfg.floating_ip.address), "dev", "eth0"], check=True)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port)); s.listen(8)
while True:
    c = s.accept()[0]; c.sendall(greeting + node.encode() + b"\\r\\n"); c.close()
"""


def fake_agent(cfg: ClusterConfig, node: str) -> list[str]:
    assert cfg.source is not None
    port, prefix = cluster.service_probe(cfg)
    return [sys.executable, "-c", FAKE_AGENT, str(cfg.source), node, str(port), prefix.decode() + "fake agent "]


def exiting_agent(cfg: ClusterConfig, node: str) -> list[str]:
    return [sys.executable, "-c", "import sys; print('agent: cannot start'); sys.exit(3)"]


@pytest.fixture
def cfg(tmp_path: pathlib.Path) -> Iterator[ClusterConfig]:
    config = lab_config(tmp_path)
    try:
        yield config
    finally:
        cluster.cluster_down(config, out=io.StringIO())


def nothing_left(cfg: ClusterConfig) -> None:
    assert ours_in_system(cfg) == []
    ensemble = Ensemble(cfg.zookeeper)
    assert [ensemble.pid(m.id) for m in cfg.zookeeper.members] == [None] * len(cfg.zookeeper.members)
    for node in cfg.nodes:
        assert not paths.agent_pid_file(cfg, node.name).exists()


def test_up_serves_on_the_floating_ip_and_down_leaves_nothing_even_after_a_crash(cfg: ClusterConfig) -> None:
    out = io.StringIO()
    active = cluster.cluster_up(cfg, timeout=60, out=out, agent_command=fake_agent, demo_user=False)
    n1, n2 = cfg.nodes
    assert active == n1.name
    assert netns.holders_of(cfg, cfg.floating_ip.address.ip) == [n1.name]
    port, prefix = cluster.service_probe(cfg)
    greeting = cluster.greeting_line(str(cfg.floating_ip.address.ip), port)
    assert greeting == prefix + b"fake agent " + n1.name.encode()
    assert "is up in" in out.getvalue() and f"{n1.name} is active" in out.getvalue()
    cert, key = demo_tls.tls_files(cfg)
    assert cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert key.stat().st_mode & 0o077 == 0
    assert cfg.storage.path.is_dir()
    pids = {n.name: cluster.agent_pid(cfg, n.name) for n in cfg.nodes}
    assert None not in pids.values()

    # up again changes nothing
    assert cluster.cluster_up(cfg, timeout=60, out=io.StringIO(), agent_command=fake_agent, demo_user=False) == active
    assert {n.name: cluster.agent_pid(cfg, n.name) for n in cfg.nodes} == pids

    # The agent of node 2 "crashes" (SIGKILL, pid file lost); its child lives on in the namespace.
    crashed = pids[n2.name]
    assert crashed is not None
    os.kill(crashed, signal.SIGKILL)
    paths.agent_pid_file(cfg, n2.name).unlink()
    deadline = time.monotonic() + 5
    while crashed in netns.pids_in_netns(n2.namespace) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = netns.pids_in_netns(n2.namespace)
    assert survivors, "the stand-in agent's child should outlive it"

    done = cluster.cluster_down(cfg, out=io.StringIO())
    assert any(line.startswith("stopped ") and n2.name in line for line in done)
    assert any("ZooKeeper" in line for line in done)
    nothing_left(cfg)
    for pid in survivors:  # gone, or a zombie waiting for its reaper (not ours: its parent died)
        assert cluster.process_start_time(pid) is None
    again = io.StringIO()
    assert cluster.cluster_down(cfg, out=again) == []
    assert "nothing to do" in again.getvalue()


def test_up_reports_agents_that_exit_and_down_still_cleans(cfg: ClusterConfig) -> None:
    with pytest.raises(cluster.ClusterError, match="every agent exited"):
        cluster.cluster_up(cfg, timeout=30, out=io.StringIO(), agent_command=exiting_agent)
    assert "agent: cannot start" in paths.agent_log_file(cfg, cfg.nodes[0].name).read_text()
    cluster.cluster_down(cfg, out=io.StringIO())
    nothing_left(cfg)


def _real_agent_available() -> bool:
    probe = subprocess.run(
        [sys.executable, "-m", "mailha.cli", "agent", "--help"], capture_output=True, timeout=60, check=False
    )
    return probe.returncode == 0


@pytest.fixture
def cfg_with_web(tmp_path: pathlib.Path) -> Iterator[ClusterConfig]:
    config = lab_config(tmp_path, web_port=WEB_PORT)
    try:
        yield config
    finally:
        cluster.cluster_down(config, out=io.StringIO())


WEB_PORT = 8443  # inside the lab's own namespaces


def _login_page(host: str, timeout: float = 60.0) -> bytes:
    """The web console's login page over HTTPS at host:WEB_PORT (retried while it starts)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the demo certificate
    deadline = time.monotonic() + timeout
    while True:
        try:
            with (
                socket.create_connection((host, WEB_PORT), timeout=5) as raw,
                context.wrap_socket(raw) as tls,
            ):
                tls.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                reply = b""
                while chunk := tls.recv(65536):
                    reply += chunk
                return reply
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.mark.slow
def test_real_cluster_up_serves_imap_and_the_console_on_every_node_and_down_cleans(
    cfg_with_web: ClusterConfig,
) -> None:
    cfg = cfg_with_web
    if not _real_agent_available():
        pytest.skip("`mailha agent` is not available yet")
    active = cluster.cluster_up(cfg, timeout=90, out=io.StringIO())
    port, prefix = cluster.service_probe(cfg)
    greeting = cluster.greeting_line(str(cfg.floating_ip.address.ip), port)
    assert greeting is not None and greeting.startswith(prefix)
    assert netns.holders_of(cfg, cfg.floating_ip.address.ip) == [active]
    assert cluster.create_demo_user(cfg, active) is False  # made by up already
    # The console on each node's own address and on the floating IP (the active node's web).
    for host in [str(n.address.ip) for n in cfg.nodes] + [str(cfg.floating_ip.address.ip)]:
        page = _login_page(host)
        assert page.startswith(b"HTTP/1.1 200") and b'name="password"' in page, (host, page[:300])
    cluster.cluster_down(cfg, out=io.StringIO())
    nothing_left(cfg)


def test_cluster_down_command_cleans_a_lab_it_did_not_start(cfg: ClusterConfig) -> None:
    """`mailha cluster down` in a fresh process finds everything from cluster.yaml alone."""
    assert cfg.source is not None
    Lab(cfg).up()
    stray = netns.popen_in_netns(cfg.nodes[0].namespace, ["sleep", "300"], start_new_session=True)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "mailha.cli", "cluster", "down", "--config", str(cfg.source)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert f"stopped 1 process(es) of {cfg.nodes[0].name}" in result.stdout
        assert "stopped 3 ZooKeeper member(s)" in result.stdout
        assert stray.wait(timeout=10) == -signal.SIGTERM
        nothing_left(cfg)
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()
