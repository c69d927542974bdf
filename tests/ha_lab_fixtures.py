"""A throw-away HA lab for integration tests: namespaces, a bridge and a
3-member ZooKeeper ensemble listening on the bridge address.

Each lab takes its own /28 inside 192.0.2.0/24 (one no interface on the
host uses yet) and names its bridge, namespaces and nodes with a random tag,
so labs of concurrent test runs, and a running demo cluster (192.0.2.0/28
on mailha-br0), do not collide: the most specific route wins.

Use `lab_config(tmp_path)` to get a ClusterConfig, then `Lab(cfg)` (or the
`ha_lab` fixture, session-scoped) to build and later tear everything down.
"""

from __future__ import annotations

import ipaddress
import pathlib
import random
import secrets
from collections.abc import Iterator

import pytest
import yaml
from pyroute2 import IPRoute

from lab import topology
from lab.zk_ensemble import Ensemble
from nodeconf import config
from nodeconf.config import ClusterConfig
from tests.zk_fixtures import free_ports

TEST_NET = ipaddress.IPv4Network("192.0.2.0/24")


def _used_networks() -> set[ipaddress.IPv4Network]:
    used = set()
    with IPRoute() as ipr:
        for msg in ipr.addr("dump", family=2):
            addr = msg.get("IFA_ADDRESS")
            if addr and ipaddress.IPv4Address(addr) in TEST_NET:
                used.add(ipaddress.IPv4Interface(f"{addr}/{msg['prefixlen']}").network)
    return used


def free_subnet() -> ipaddress.IPv4Network:
    """A /28 of 192.0.2.0/24 that overlaps no more-specific-or-equal network in use.

    The first /28 is left to the demo cluster (192.0.2.1, .10, .11, .12).
    """
    used = _used_networks()
    candidates = list(TEST_NET.subnets(new_prefix=28))[1:]
    random.shuffle(candidates)
    for net in candidates:
        if not any(net.overlaps(u) and u.prefixlen >= net.prefixlen for u in used):
            return net
    raise RuntimeError("no free /28 left in 192.0.2.0/24 for a test lab")


def lab_config(
    tmp_path: pathlib.Path, *, nodes: int = 2, zk_members: int = 3, service_user: str = "root", web_port: int = 0
) -> ClusterConfig:
    """A cluster config of its own (unique names, a free /28, free ports),
    written to tmp_path/cluster.yaml so agents started with --config read it.
    service_user "root": pytest's tmp_path is under a directory only root can
    reach (the privilege-drop test uses a reachable directory and "mailha")."""
    tag = secrets.token_hex(3)
    subnet = free_subnet()
    hosts = list(subnet.hosts())  # 14 addresses
    bridge_ip = hosts[0]
    ports = free_ports(3 * zk_members)
    data = {
        "name": f"lab-{tag}",
        "bridge": f"mhb-{tag}",
        "bridge_address": f"{bridge_ip}/{subnet.prefixlen}",
        "nodes": [
            {
                "name": f"{tag}n{i + 1}",
                "address": f"{hosts[i + 1]}/{subnet.prefixlen}",
                "namespace": f"mht-{tag}-n{i + 1}",
            }
            for i in range(nodes)
        ],
        "floating_ip": {"address": f"{hosts[-1]}/{subnet.prefixlen}"},
        "zookeeper": {
            "members": [
                {
                    "id": i + 1,
                    "host": str(bridge_ip),
                    "client_port": ports[3 * i],
                    "peer_port": ports[3 * i + 1],
                    "election_port": ports[3 * i + 2],
                }
                for i in range(zk_members)
            ],
            "session_timeout": 2.0,
            "data_dir": str(tmp_path / "zk"),
        },
        "storage": {"path": str(tmp_path / "shared")},
        "ports": {"web": web_port},  # no web app on the nodes unless a test asks
        "runtime_dir": str(tmp_path / "run"),
        "service_user": service_user,
    }
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return config.load(path)


class Lab:
    """Topology plus ensemble for one lab config; `down` removes both."""

    def __init__(self, cfg: ClusterConfig) -> None:
        self.cfg = cfg
        self.ensemble = Ensemble(cfg.zookeeper, die_with_parent=True)

    def up(self, with_zookeeper: bool = True) -> None:
        topology.topology_up(self.cfg)
        if with_zookeeper:
            self.ensemble.start()

    def down(self) -> None:
        try:
            self.ensemble.stop()
        finally:
            topology.topology_down(self.cfg)


@pytest.fixture(scope="session")
def ha_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Session-scoped lab: 2 nodes in namespaces, ZooKeeper on the bridge."""
    lab = Lab(lab_config(tmp_path_factory.mktemp("lab")))
    try:
        lab.up()
        yield lab
    finally:
        lab.down()
