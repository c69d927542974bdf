"""The namespace topology (lab/topology.py, haagent/netns.py) on real namespaces: it builds,
connects, reports addresses from the kernel and leaves nothing behind."""

from __future__ import annotations

import dataclasses
import ipaddress
import pathlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from pyroute2 import IPRoute

from haagent import floating_ip, netns
from lab import topology
from nodeconf.config import ClusterConfig, FloatingIpConfig
from tests.ha_lab_fixtures import lab_config

pytestmark = [pytest.mark.integration, pytest.mark.root]

CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
except ConnectionRefusedError:
    sys.exit(1)
except OSError:
    sys.exit(2)
"""


def tcp_probe(namespace: str | None, host: str, port: int, timeout: float = 0.5) -> str:
    """'open', 'refused' (the host answered) or 'silent' (nothing came back)."""
    argv = [sys.executable, "-c", CONNECT, host, str(port), str(timeout)]
    if namespace is not None:
        argv = netns.netns_argv(namespace, argv)
    code = subprocess.run(argv, check=False, timeout=30).returncode
    return {0: "open", 1: "refused", 2: "silent"}[code]


def ours_in_system(cfg: ClusterConfig) -> list[str]:
    """Everything of cfg's topology the system shows, read with iproute2 itself."""
    netns_list = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    addrs = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    names = [cfg.bridge, *(topology.host_veth_name(n) for n in cfg.nodes)]
    found = [f"netns {n.namespace}" for n in cfg.nodes if n.namespace in netns_list.split()]
    found += [f"link {name}" for name in names if f" {name}:" in links or f" {name}@" in links]
    found += [f"addr {cfg.bridge_address.ip}" for line in addrs.splitlines() if f" {cfg.bridge_address} " in line]
    return found


@pytest.fixture
def cfg(tmp_path: pathlib.Path) -> Iterator[ClusterConfig]:
    config = lab_config(tmp_path)
    try:
        yield config
    finally:
        topology.topology_down(config)


def test_up_builds_the_wiring_and_down_leaves_nothing_twice(cfg: ClusterConfig) -> None:
    for _ in range(2):
        links = topology.topology_up(cfg)
        assert [link.namespace for link in links] == [n.namespace for n in cfg.nodes]
        assert sorted(ours_in_system(cfg)) == sorted(
            [f"netns {n.namespace}" for n in cfg.nodes]
            + [f"link {cfg.bridge}", *(f"link {topology.host_veth_name(n)}" for n in cfg.nodes)]
            + [f"addr {cfg.bridge_address.ip}"]
        )
        for node in cfg.nodes:
            assert netns.interface_addresses(node.namespace, "eth0") == [node.address]
        assert netns.interface_addresses(None, cfg.bridge) == [cfg.bridge_address]
        removed = topology.topology_down(cfg)
        assert len(removed) == 2 * len(cfg.nodes) + 1
        assert ours_in_system(cfg) == []
        assert topology.topology_leftovers(cfg) == []
        assert topology.topology_down(cfg) == []


def test_up_is_idempotent_and_repairs_a_partial_topology(cfg: ClusterConfig) -> None:
    topology.topology_up(cfg)
    topology.topology_up(cfg)
    node = cfg.nodes[0]
    # A half-built state: the veth pair of node 1 is gone, its namespace stays.
    subprocess.run(["ip", "link", "del", topology.host_veth_name(node)], check=True)
    assert netns.interface_addresses(node.namespace, "eth0") == []
    topology.topology_up(cfg)
    assert netns.interface_addresses(node.namespace, "eth0") == [node.address]
    assert tcp_probe(node.namespace, str(cfg.nodes[1].address.ip), 9) == "refused"


def test_only_test_net_and_loopback_addresses_and_no_ipv6(cfg: ClusterConfig) -> None:
    topology.topology_up(cfg)
    test_net = ipaddress.IPv4Network("192.0.2.0/24")
    for node in cfg.nodes:
        out = netns.run_in_netns(node.namespace, ["ip", "-o", "addr"]).stdout
        for line in out.splitlines():
            family, address = line.split()[2], line.split()[3]
            assert family == "inet", line  # no inet6 at all, not even link-local
            ip = ipaddress.IPv4Interface(address).ip
            assert ip.is_loopback or ip in test_net, line
    with IPRoute() as ipr:
        for name in [cfg.bridge, *(topology.host_veth_name(n) for n in cfg.nodes)]:
            index = ipr.link_lookup(ifname=name)[0]
            assert [m.get("IFA_ADDRESS") for m in ipr.addr("dump", index=index, family=10)] == []


def test_nodes_reach_each_other_and_the_bridge(cfg: ClusterConfig) -> None:
    topology.topology_up(cfg)
    n1, n2 = cfg.nodes
    # "refused" means the SYN arrived and an RST came back: the path works.
    assert tcp_probe(n1.namespace, str(n2.address.ip), 9) == "refused"
    assert tcp_probe(n2.namespace, str(cfg.bridge_address.ip), 9) == "refused"
    assert tcp_probe(None, str(n1.address.ip), 9) == "refused"


def test_holders_and_processes_are_read_from_the_kernel(cfg: ClusterConfig) -> None:
    topology.topology_up(cfg)
    n1, n2 = cfg.nodes
    floating = cfg.floating_ip.address
    assert netns.holders_of(cfg, floating.ip) == []
    netns.run_in_netns(n2.namespace, ["ip", "addr", "add", str(floating), "dev", "eth0"])
    assert netns.holders_of(cfg, floating.ip) == [n2.name]
    sleeper = netns.popen_in_netns(n1.namespace, ["sleep", "30"])
    try:
        # `ip netns exec` enters the namespace a moment after the fork.
        deadline = time.monotonic() + 5
        while not netns.pids_in_netns(n1.namespace) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert netns.pids_in_netns(n1.namespace) == [sleeper.pid]
        assert netns.pids_in_netns(n2.namespace) == []
    finally:
        sleeper.kill()
        sleeper.wait()


def test_down_removes_strays_on_the_bridge_and_survives_half_gone_state(cfg: ClusterConfig) -> None:
    topology.topology_up(cfg)
    # A veth some crashed run attached to our bridge, under a name not from the config.
    stray = "mhs-" + cfg.name[-6:]
    subprocess.run(["ip", "link", "add", stray, "type", "veth", "peer", "name", stray + "p"], check=True)
    subprocess.run(["ip", "link", "set", stray, "master", cfg.bridge], check=True)
    subprocess.run(["ip", "netns", "del", cfg.nodes[0].namespace], check=True)
    removed = topology.topology_down(cfg)
    assert f"link {stray}" in removed
    assert ours_in_system(cfg) == []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert stray not in links


def test_up_refuses_a_network_the_host_already_uses(cfg: ClusterConfig) -> None:
    # Another interface of the host holds an address inside the lab's network
    # (like a host whose uplink is 192.0.2.2/24): building would capture its traffic.
    other = "mhd-" + cfg.name[-6:]
    inside = list(cfg.bridge_address.network.hosts())[5]
    subprocess.run(["ip", "link", "add", other, "type", "veth", "peer", "name", other + "p"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", f"{inside}/32", "dev", other], check=True)
        assert topology.address_conflicts(cfg) == [f"{other} holds {inside}, inside {cfg.bridge_address.network}"]
        with pytest.raises(netns.NetnsError, match="already uses this network"):
            topology.topology_up(cfg)
        assert ours_in_system(cfg) == []
    finally:
        subprocess.run(["ip", "link", "del", other], check=True)
    assert topology.address_conflicts(cfg) == []
    topology.topology_up(cfg)
    assert topology.address_conflicts(cfg) == []  # our own bridge is no conflict


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bridge_address": ipaddress.IPv4Interface("198.51.100.1/24")}, "bridge_address: 198.51.100.1/24 is outside"),
        ({"floating_ip": FloatingIpConfig(address=ipaddress.IPv4Interface("192.0.2.200/24"))}, "floating_ip.address"),
    ],
)
def test_addresses_outside_the_lab_network_are_refused(
    cfg: ClusterConfig, change: dict[str, object], message: str
) -> None:
    bad = dataclasses.replace(cfg, **change)  # type: ignore[arg-type]
    with pytest.raises(netns.NetnsError, match=message):
        topology.topology_up(bad)
    assert ours_in_system(cfg) == []


FIP_ACTION = """
import sys
from haagent import floating_ip
from nodeconf.config import load
fip = load(sys.argv[1]).floating_ip
{body}
"""


def _fip_in(namespace: str, config_path: pathlib.Path, body: str) -> str:
    argv = [sys.executable, "-c", FIP_ACTION.format(body=body), str(config_path)]
    return netns.run_in_netns(namespace, argv).stdout.strip()


def test_a_dropped_floating_ip_refuses_at_once_and_is_never_announced(tmp_path: pathlib.Path) -> None:
    """Issue 14: a SYN that reaches the old holder after it dropped the address
    (the host's neighbour entry still names its MAC) is refused (RST), not
    silently dropped; and the refuser never answers ARP (not a second holder)."""
    cfg = lab_config(tmp_path)
    path = tmp_path / "cluster.yaml"  # lab_config wrote it there
    try:
        topology.topology_up(cfg)
        n1 = cfg.nodes[0]
        vip, port = str(cfg.floating_ip.address.ip), 7
        _fip_in(n1.namespace, path, "floating_ip.prepare(fip); floating_ip.add(fip); floating_ip.send_garp(fip)")
        assert tcp_probe(None, vip, port) == "refused"  # held, nothing listens: the host learnt n1's MAC
        assert _fip_in(n1.namespace, path, "print(floating_ip.remove(fip), floating_ip.refusing_here(fip))") == (
            "True True"
        )
        assert netns.holders_of(cfg, cfg.floating_ip.address.ip) == []
        assert tcp_probe(None, vip, port) == "refused"  # without the refuser: 'silent' (black hole)
        # Not a holder: with the host's neighbour entry gone, nobody answers ARP.
        subprocess.run(["ip", "neigh", "flush", "to", vip, "dev", cfg.bridge], check=True)
        assert tcp_probe(None, vip, port) == "silent"
        # Fencing from outside (netns-kill) leaves the same refuser behind.
        _fip_in(n1.namespace, path, "floating_ip.add(fip); floating_ip.send_garp(fip)")
        assert _fip_in(n1.namespace, path, "print(floating_ip.refusing_here(fip))") == "False"
        assert tcp_probe(None, vip, port) == "refused"
        assert floating_ip.remove_in_namespace(cfg.floating_ip, n1.namespace)
        assert netns.holders_of(cfg, cfg.floating_ip.address.ip) == []
        assert tcp_probe(None, vip, port) == "refused"
        # The agent's next start drops it.
        _fip_in(n1.namespace, path, "floating_ip.prepare(fip)")
        assert tcp_probe(None, vip, port) == "silent"
    finally:
        topology.topology_down(cfg)


ECHO = """
import socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen()
print("listening", flush=True)
def echo(conn):
    while data := conn.recv(100):
        conn.sendall(data)
while True:
    threading.Thread(target=echo, args=(srv.accept()[0],), daemon=True).start()
"""


def test_a_handing_over_node_keeps_its_sessions_and_refuses_new_ones(tmp_path: pathlib.Path) -> None:
    """Issue 14, the planned hand-over: the old active's open sessions keep
    working after its address became the refuser, while a new connection is
    refused (RST) instead of opening a session the fence would break."""
    cfg = lab_config(tmp_path)
    path = tmp_path / "cluster.yaml"
    try:
        topology.topology_up(cfg)
        n1 = cfg.nodes[0]
        vip, port = str(cfg.floating_ip.address.ip), 2525
        _fip_in(n1.namespace, path, "floating_ip.prepare(fip); floating_ip.add(fip); floating_ip.send_garp(fip)")
        server = netns.popen_in_netns(
            n1.namespace, [sys.executable, "-c", ECHO, vip, str(port)], stdout=subprocess.PIPE
        )
        try:
            assert server.stdout is not None and server.stdout.readline() == b"listening\n"
            with socket.create_connection((vip, port), timeout=2) as session:
                session.sendall(b"before")
                assert session.recv(100) == b"before"
                _fip_in(n1.namespace, path, "floating_ip.refuse_new_connections(fip); floating_ip.remove(fip)")
                assert netns.holders_of(cfg, cfg.floating_ip.address.ip) == []
                session.sendall(b"during")
                assert session.recv(100) == b"during"  # the open session goes on
                assert tcp_probe(None, vip, port) == "refused"  # a new one is refused at once
                _fip_in(n1.namespace, path, "floating_ip.accept_new_connections()")
                assert tcp_probe(None, vip, port) == "open"  # (the rule was what refused it)
        finally:
            server.kill()
            server.wait()
    finally:
        topology.topology_down(cfg)
