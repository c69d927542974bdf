"""nftables partitions (lab/partition.py) really block what they say,
and only that, and heal completely."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from haagent import netns
from lab.partition import PartitionKind, active_partitions, heal, partition
from nodeconf.config import ClusterConfig
from tests.ha_lab_fixtures import Lab
from tests.test_ha_netns_topology import tcp_probe

pytestmark = [pytest.mark.integration, pytest.mark.root]

LISTEN = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
print("ready", flush=True)
while True:
    s.accept()[0].close()
"""


@pytest.fixture
def lab(ha_lab: Lab) -> Iterator[Lab]:
    """The session lab with an IMAP-port listener on node 1; healed afterwards."""
    node = ha_lab.cfg.nodes[0]
    listener = netns.popen_in_netns(
        node.namespace,
        [sys.executable, "-c", LISTEN, str(ha_lab.cfg.ports.imap)],
        stdout=subprocess.PIPE,
    )
    try:
        assert listener.stdout is not None and listener.stdout.readline() == b"ready\n"
        yield ha_lab
    finally:
        listener.kill()
        listener.wait()
        if listener.stdout is not None:
            listener.stdout.close()
        for n in ha_lab.cfg.nodes:
            heal(ha_lab.cfg, n.name)


def reachability(cfg: ClusterConfig) -> dict[str, str]:
    n1, n2 = cfg.nodes
    zk = cfg.zookeeper.members[0]
    return {
        "n1->zk": tcp_probe(n1.namespace, zk.host, zk.client_port),
        "n1->n2": tcp_probe(n1.namespace, str(n2.address.ip), 9),
        "client->n1 imap": tcp_probe(None, str(n1.address.ip), cfg.ports.imap),
        "n2->zk": tcp_probe(n2.namespace, zk.host, zk.client_port),
    }


HEALTHY = {"n1->zk": "open", "n1->n2": "refused", "client->n1 imap": "open", "n2->zk": "open"}


def test_lab_is_fully_connected(lab: Lab) -> None:
    assert reachability(lab.cfg) == HEALTHY
    assert active_partitions(lab.cfg, lab.cfg.nodes[0].name) == set()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (PartitionKind.ZOOKEEPER, {**HEALTHY, "n1->zk": "silent"}),
        (PartitionKind.CLIENTS, {**HEALTHY, "client->n1 imap": "silent"}),
        (PartitionKind.FULL, {**HEALTHY, "n1->zk": "silent", "n1->n2": "silent", "client->n1 imap": "silent"}),
    ],
)
def test_partition_blocks_exactly_its_kind_and_heals(lab: Lab, kind: PartitionKind, expected: dict[str, str]) -> None:
    node = lab.cfg.nodes[0].name
    partition(lab.cfg, node, kind)
    assert active_partitions(lab.cfg, node) == {kind}
    assert reachability(lab.cfg) == expected
    assert heal(lab.cfg, node) is True
    assert active_partitions(lab.cfg, node) == set()
    assert reachability(lab.cfg) == HEALTHY
    assert heal(lab.cfg, node) is False


def test_zookeeper_partition_cuts_an_established_session(lab: Lab) -> None:
    """A kazoo client inside node 1 is connected, then goes SUSPENDED once cut off."""
    script = """
import sys, threading, time
from kazoo.client import KazooClient, KazooState
states = []
seen = threading.Event()
c = KazooClient(hosts=sys.argv[1], timeout=2.0)
c.add_listener(lambda s: (states.append(s), seen.set() if s != KazooState.CONNECTED else None))
c.start(timeout=10)
print("connected", flush=True)
sys.stdin.readline()
ok = seen.wait(5)
print("suspended" if ok else "still connected", flush=True)
c.stop(); c.close()
"""
    node = lab.cfg.nodes[0]
    proc = netns.popen_in_netns(
        node.namespace,
        [sys.executable, "-c", script, lab.cfg.zookeeper.hosts],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == b"connected\n"
        partition(lab.cfg, node.name, PartitionKind.ZOOKEEPER)
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"suspended\n"
    finally:
        heal(lab.cfg, node.name)
        proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
