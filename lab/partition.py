"""Network partitions of one node, made with nftables inside its namespace.

A partition is a set of drop rules in the node's own namespace, in tables
named `mailha_partition` (family inet for IP, family arp for the full cut),
so healing is deleting those tables and nothing else on the host changes.
Packets are dropped, not rejected: a real cut is silent, and the peers must
find out by their own timeouts (kazoo's pings, TCP retransmits).

Kinds:
    ZOOKEEPER  the node cannot talk to any ensemble member's client port;
               everything else (clients, the other node) still works
    CLIENTS    IMAP, IMAPS and LMTP are cut (both directions); ZooKeeper works
    FULL       every packet except loopback, and ARP, is dropped
"""

from __future__ import annotations

import enum
import subprocess

from haagent.netns import NetnsError, namespace_exists, run_in_netns
from nodeconf.config import ClusterConfig

TABLE = "mailha_partition"


class PartitionKind(enum.Enum):
    ZOOKEEPER = "zookeeper"
    CLIENTS = "clients"
    FULL = "full"


class PartitionError(Exception):
    """nft failed inside the node's namespace (or the namespace is missing)."""


def _rules(cfg: ClusterConfig, kind: PartitionKind) -> tuple[list[str], list[str]]:
    """(input rules, output rules) for one kind, in nft syntax."""
    comment = f'comment "mailha partition {kind.value}"'
    if kind is PartitionKind.ZOOKEEPER:
        inbound = [f"ip saddr {m.host} tcp sport {m.client_port} drop {comment}" for m in cfg.zookeeper.members]
        outbound = [f"ip daddr {m.host} tcp dport {m.client_port} drop {comment}" for m in cfg.zookeeper.members]
        return inbound, outbound
    if kind is PartitionKind.CLIENTS:
        ports = ", ".join(str(p) for p in sorted({cfg.ports.imap, cfg.ports.imaps, cfg.ports.lmtp}))
        return [f"tcp dport {{ {ports} }} drop {comment}"], [f"tcp sport {{ {ports} }} drop {comment}"]
    return [f'iifname != "lo" drop {comment}'], [f'oifname != "lo" drop {comment}']


def _script(cfg: ClusterConfig, kind: PartitionKind) -> str:
    inbound, outbound = _rules(cfg, kind)
    # `add` is idempotent for tables and chains; rules accumulate per kind.
    lines = [
        f"add table inet {TABLE}",
        f"add chain inet {TABLE} input {{ type filter hook input priority -10 ; policy accept ; }}",
        f"add chain inet {TABLE} output {{ type filter hook output priority -10 ; policy accept ; }}",
        *(f"add rule inet {TABLE} input {rule}" for rule in inbound),
        *(f"add rule inet {TABLE} output {rule}" for rule in outbound),
    ]
    if kind is PartitionKind.FULL:
        lines += [
            f"add table arp {TABLE}",
            f"add chain arp {TABLE} input {{ type filter hook input priority -10 ; policy drop ; }}",
            f"add chain arp {TABLE} output {{ type filter hook output priority -10 ; policy drop ; }}",
        ]
    return "\n".join(lines) + "\n"


def _namespace(cfg: ClusterConfig, node: str) -> str:
    namespace = cfg.node(node).namespace
    if not namespace_exists(namespace):
        raise PartitionError(f"node {node}: namespace {namespace} does not exist (is the cluster up?)")
    return namespace


def partition(cfg: ClusterConfig, node: str, kind: PartitionKind) -> None:
    """Cut `node` off as `kind` says; kinds can be combined by calling again."""
    namespace = _namespace(cfg, node)
    try:
        run_in_netns(namespace, ["nft", "-f", "-"], input=_script(cfg, kind))
    except NetnsError as exc:
        raise PartitionError(str(exc)) from exc


def heal(cfg: ClusterConfig, node: str) -> bool:
    """Remove every partition of `node`; returns whether there was one. Idempotent."""
    namespace = cfg.node(node).namespace
    if not namespace_exists(namespace):
        return False
    had = False
    for family in ("inet", "arp"):
        result = run_in_netns(namespace, ["nft", "delete", "table", family, TABLE], check=False)
        had = had or result.returncode == 0
    return had


def active_partitions(cfg: ClusterConfig, node: str) -> set[PartitionKind]:
    """The kinds of partition in force on `node` now (read back from nft)."""
    namespace = cfg.node(node).namespace
    if not namespace_exists(namespace):
        return set()
    try:
        listing = run_in_netns(namespace, ["nft", "list", "ruleset"], check=False).stdout
    except subprocess.TimeoutExpired:
        return set()
    return {kind for kind in PartitionKind if f'"mailha partition {kind.value}"' in listing}
