"""The demo cluster's network: a bridge in the root namespace, one network
namespace per node joined to it by a veth pair (pyroute2).

    root namespace                       mailha-node1          mailha-node2
    mailha-br0 192.0.2.9/29 ──┬── mhv-node1 ══ eth0 192.0.2.11/29
                              └── mhv-node2 ══════════════ eth0 192.0.2.12/29

Everything is named from cluster.yaml, so a teardown after a crash finds
what an earlier `up` made without any state file: the configured
namespaces, the configured bridge, the host-side veths named after the
nodes, and any veth still enslaved to the bridge. Only addresses from the
config (192.0.2.0/24 in the demo) and loopback are ever assigned; IPv6 is
switched off on every interface we create so no link-local traffic appears.

The root namespace is driven with pyroute2's IPRoute (netlink, no fork);
inside node namespaces `ip -n`/`ip netns exec` is used, because pyroute2's
netns support forks this (possibly gRPC-threaded) process.

Running commands inside a namespace and reading what it holds is
haagent/netns.py (the agent does that on a production node too).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import pathlib
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from haagent.netns import (
    NetnsError,
    interface_addresses,
    ipv4_of,
    link_index,
    namespace_exists,
    run_in_netns,
)
from nodeconf.config import ClusterConfig, NodeConfig

HOST_VETH_PREFIX = "mhv-"


PEER_TEMP_PREFIX = "mhp-"  # the node side's name until it is renamed eth0 inside the namespace


NODE_IFNAME = "eth0"


IFNAMSIZ = 15


NUD_INCOMPLETE = 0x01


NUD_FAILED = 0x20


@dataclass(frozen=True)
class NodeLink:
    """How one node is wired: its namespace, both veth ends and its address."""

    node: str
    namespace: str
    host_ifname: str
    node_ifname: str
    address: ipaddress.IPv4Interface


def host_veth_name(node: NodeConfig) -> str:
    return (HOST_VETH_PREFIX + node.name)[:IFNAMSIZ]


def _peer_temp_name(node: NodeConfig) -> str:
    return (PEER_TEMP_PREFIX + node.name)[:IFNAMSIZ]


LAB_NETWORK = ipaddress.IPv4Network("192.0.2.0/24")  # TEST-NET-1: the only range a lab may use


def check_addresses(cfg: ClusterConfig) -> None:
    """The lab uses TEST-NET-1 only, and every node address, the floating IP
    and the bridge share one network (raises NetnsError naming the key)."""
    network = cfg.bridge_address.network
    if not network.subnet_of(LAB_NETWORK):
        raise NetnsError(f"bridge_address: {cfg.bridge_address} is outside {LAB_NETWORK}")
    named = [(f"nodes[{i}].address", n.address) for i, n in enumerate(cfg.nodes)]
    named.append(("floating_ip.address", cfg.floating_ip.address))
    for key, address in named:
        if address.network != network:
            raise NetnsError(f"{key}: {address} is not in the bridge's network {network}")
    used = [cfg.bridge_address.ip, *(address.ip for _, address in named)]
    if len(set(used)) != len(used):
        raise NetnsError("bridge_address, nodes[].address and floating_ip.address must all differ")


def node_links(cfg: ClusterConfig) -> list[NodeLink]:
    """The wiring of every node, checked for name clashes and stray addresses."""
    check_addresses(cfg)
    links = [NodeLink(n.name, n.namespace, host_veth_name(n), NODE_IFNAME, n.address) for n in cfg.nodes]
    for attr in ("host_ifname", "namespace"):
        names = [getattr(link, attr) for link in links]
        if len(set(names)) != len(names):
            raise NetnsError(f"nodes: {attr} values clash after truncation to {IFNAMSIZ} chars: {names}")
    if len(cfg.bridge) > IFNAMSIZ:
        raise NetnsError(f"bridge: interface name {cfg.bridge!r} longer than {IFNAMSIZ} chars")
    return links


def _ignore(codes: Iterable[int], fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except NetlinkError as exc:
        if exc.code in set(codes):
            return None
        raise


def _ensure_address(ipr: Any, index: int, address: ipaddress.IPv4Interface) -> None:
    if address not in ipv4_of(ipr, index):
        _ignore(
            [errno.EEXIST], ipr.addr, "add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen
        )


def _root_sysctl(path: str, value: str) -> None:
    target = pathlib.Path("/proc/sys") / path
    if target.exists():
        target.write_text(value)


# ---------------------------------------------------------------------------
# Build


def _ensure_namespace(link: NodeLink) -> None:
    if not namespace_exists(link.namespace):
        _ip("netns", "add", link.namespace)
    # Before any interface appears in it: no IPv6 (no link-local chatter).
    run_in_netns(
        link.namespace,
        ["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"],
        check=False,
    )


def _ensure_bridge(ipr: Any, cfg: ClusterConfig) -> int:
    index = link_index(ipr, cfg.bridge)
    if index is None:
        ipr.link("add", ifname=cfg.bridge, kind="bridge")
        index = link_index(ipr, cfg.bridge)
        if index is None:
            raise NetnsError(f"bridge {cfg.bridge} vanished right after creation")
    _root_sysctl(f"net/ipv6/conf/{cfg.bridge}/disable_ipv6", "1")
    # Learn the floating IP's new owner from its gratuitous ARP even when
    # the host had no neighbour entry for it yet.
    _root_sysctl(f"net/ipv4/conf/{cfg.bridge}/arp_accept", "1")
    _ensure_address(ipr, index, cfg.bridge_address)
    ipr.link("set", index=index, state="up")
    return index


def _ensure_veth(ipr: Any, bridge_index: int, node: NodeConfig, link: NodeLink) -> None:
    host_index = link_index(ipr, link.host_ifname)
    if host_index is None:
        ipr.link(
            "add",
            ifname=link.host_ifname,
            kind="veth",
            peer={"ifname": _peer_temp_name(node), "net_ns_fd": link.namespace},
        )
        host_index = link_index(ipr, link.host_ifname)
        if host_index is None:
            raise NetnsError(f"veth {link.host_ifname} vanished right after creation")
    _root_sysctl(f"net/ipv6/conf/{link.host_ifname}/disable_ipv6", "1")
    ipr.link("set", index=host_index, master=bridge_index, state="up")


def _ip(*args: str) -> str:
    """Run iproute2's `ip` and return its output (raises NetnsError)."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def _links_in(namespace: str) -> set[str]:
    return {str(link["ifname"]) for link in json.loads(_ip("-n", namespace, "-j", "link", "show") or "[]")}


def _configure_node_side(node: NodeConfig, link: NodeLink) -> None:
    # Inside the namespace through `ip -n`, not pyroute2's netns support:
    # that forks a Python child, which can crash next to gRPC's threads.
    ns = link.namespace
    names = _links_in(ns)
    if link.node_ifname not in names:
        temp = _peer_temp_name(node)
        if temp not in names:
            raise NetnsError(f"{ns}: neither {link.node_ifname} nor {temp} exists")
        _ip("-n", ns, "link", "set", "dev", temp, "down")
        _ip("-n", ns, "link", "set", "dev", temp, "name", link.node_ifname)
    if link.address not in interface_addresses(ns, link.node_ifname):
        _ip("-n", ns, "addr", "replace", str(link.address), "dev", link.node_ifname)
    _ip("-n", ns, "link", "set", "dev", link.node_ifname, "up")
    _ip("-n", ns, "link", "set", "dev", "lo", "up")


def address_conflicts(cfg: ClusterConfig) -> list[str]:
    """Reasons the configured network would disturb the host's own networking.

    Our bridge's network must not contain an address another interface of
    the host holds, a gateway one of its routes goes through, or a
    neighbour it talks to: the bridge's more specific (or equal) route
    would capture that traffic (e.g. a host whose uplink is 192.0.2.2/24
    with gateway 192.0.2.1 cannot give 192.0.2.1 to the bridge).
    """
    ours = cfg.bridge_address.network
    own_links = {cfg.bridge, *(link.host_ifname for link in node_links(cfg))}
    problems: list[str] = []
    with IPRoute() as ipr:
        names = {int(m["index"]): str(m.get("IFLA_IFNAME")) for m in ipr.get_links()}

        def foreign(index: object) -> bool:
            return isinstance(index, int) and names.get(index) not in own_links

        for msg in ipr.addr("dump", family=2):
            addr = msg.get("IFA_ADDRESS")
            if addr and foreign(msg["index"]) and ipaddress.IPv4Address(addr) in ours:
                problems.append(f"{names[msg['index']]} holds {addr}, inside {ours}")
        for msg in ipr.route("dump", family=2):
            gateway = msg.get("RTA_GATEWAY")
            if gateway and foreign(msg.get("RTA_OIF")) and ipaddress.IPv4Address(gateway) in ours:
                problems.append(f"a route goes via {gateway} on {names.get(msg.get('RTA_OIF'))}, inside {ours}")
        for msg in ipr.get_neighbours(family=2):
            dst = msg.get("NDA_DST")
            if msg["state"] & (NUD_INCOMPLETE | NUD_FAILED):
                continue  # nobody answered there: not a neighbour we would cut off
            if dst and foreign(msg["ifindex"]) and ipaddress.IPv4Address(dst) in ours:
                problems.append(f"neighbour {dst} on {names.get(msg['ifindex'])} is inside {ours}")
    return sorted(set(problems))


def topology_up(cfg: ClusterConfig) -> list[NodeLink]:
    """Build (or complete) the topology; safe to run on a partial or full one.

    Refuses (NetnsError) when the network would capture the host's own
    traffic (see address_conflicts); nothing is changed then.
    """
    links = node_links(cfg)
    problems = address_conflicts(cfg)
    if problems:
        raise NetnsError(
            f"bridge_address {cfg.bridge_address}: the host already uses this network ("
            + "; ".join(problems)
            + "); choose a free range of 192.0.2.0/24 for bridge_address, the nodes and the floating IP"
        )
    try:
        with IPRoute() as ipr:
            bridge_index = _ensure_bridge(ipr, cfg)
            for node, link in zip(cfg.nodes, links, strict=True):
                _ensure_namespace(link)
                _ensure_veth(ipr, bridge_index, node, link)
                _configure_node_side(node, link)
    except NetlinkError as exc:
        raise NetnsError(f"building the topology failed: {exc}") from exc
    return links


# ---------------------------------------------------------------------------
# Tear down


def _enslaved_to(ipr: Any, bridge_index: int) -> list[str]:
    names = []
    for msg in ipr.get_links():
        if msg.get("IFLA_MASTER") == bridge_index:
            names.append(str(msg.get("IFLA_IFNAME")))
    return names


def topology_down(cfg: ClusterConfig) -> list[str]:
    """Remove every namespace, link and address of this config's topology.

    Works after a crash (everything is found by its configured name) and
    does nothing the second time. Processes still inside a namespace are not
    killed here (see pids_in_netns); deleting the namespace name drops its
    interfaces once the last process has left. Returns what was removed.
    """
    removed: list[str] = []
    links = node_links(cfg)
    with IPRoute() as ipr:
        bridge_index = link_index(ipr, cfg.bridge)
        veths = {link.host_ifname for link in links}
        if bridge_index is not None:
            veths.update(_enslaved_to(ipr, bridge_index))
        for name in sorted(veths):
            index = link_index(ipr, name)
            if index is not None:
                # Deleting one end of a veth pair deletes the other end too.
                _ignore([errno.ENODEV], ipr.link, "del", index=index)
                removed.append(f"link {name}")
        if bridge_index is not None:
            _ignore([errno.ENODEV], ipr.link, "del", index=bridge_index)
            removed.append(f"bridge {cfg.bridge} ({cfg.bridge_address})")
    for link in links:
        if namespace_exists(link.namespace):
            netns.remove(link.namespace)
            removed.append(f"namespace {link.namespace}")
    return removed


def topology_leftovers(cfg: ClusterConfig) -> list[str]:
    """What of this config's topology exists right now (empty after a clean down)."""
    found = []
    with IPRoute() as ipr:
        for name in [cfg.bridge, *(link.host_ifname for link in node_links(cfg))]:
            if link_index(ipr, name) is not None:
                found.append(f"link {name}")
        for msg in ipr.addr("dump", family=2):
            addr = msg.get("IFA_ADDRESS")
            if addr == str(cfg.bridge_address.ip):
                found.append(f"address {addr}")
    found += [f"namespace {link.namespace}" for link in node_links(cfg) if namespace_exists(link.namespace)]
    return found
