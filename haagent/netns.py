"""A node as a network namespace: run commands inside it, read the IPv4
addresses an interface really holds, find the processes living in it.

The agent (floating IP, netns-kill fencing), `mailha status` and the chaos
suite use these; the lab builds the namespaces themselves (lab/topology.py).
Other namespaces are read with `ip -n`/`ip netns exec`, never pyroute2's netns
support: that forks this (possibly gRPC-threaded) process.
"""

from __future__ import annotations

import ipaddress
import json
import os
import pathlib
import subprocess
from collections.abc import Sequence
from typing import Any

from pyroute2 import IPRoute

from nodeconf.config import ClusterConfig

NETNS_RUN_DIR = pathlib.Path("/run/netns")


class NetnsError(Exception):
    """A command in a namespace failed; the lab's topology raises it too (bad names, netlink failures)."""


def link_index(ipr: Any, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def ipv4_of(ipr: Any, index: int) -> list[ipaddress.IPv4Interface]:
    result = []
    for msg in ipr.addr("dump", index=index, family=2):
        addr = msg.get("IFA_ADDRESS")
        if addr:
            result.append(ipaddress.IPv4Interface(f"{addr}/{msg['prefixlen']}"))
    return result


def namespace_exists(name: str) -> bool:
    return (NETNS_RUN_DIR / name).exists()


def netns_argv(namespace: str, argv: Sequence[str]) -> list[str]:
    """argv that runs `argv` inside `namespace` (iproute2's `ip netns exec`)."""
    return ["ip", "netns", "exec", namespace, *argv]


def run_in_netns(
    namespace: str, argv: Sequence[str], *, check: bool = True, timeout: float = 30.0, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a short command inside `namespace` and return its output (text)."""
    try:
        return subprocess.run(
            netns_argv(namespace, argv), check=check, capture_output=True, text=True, timeout=timeout, input=input
        )
    except subprocess.CalledProcessError as exc:
        raise NetnsError(f"in {namespace}: {' '.join(argv)} failed ({exc.returncode}): {exc.stderr.strip()}") from exc


def popen_in_netns(namespace: str, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a long-running process inside `namespace` (caller owns the Popen)."""
    return subprocess.Popen(netns_argv(namespace, argv), **popen_kwargs)


def interface_addresses(namespace: str | None, ifname: str) -> list[ipaddress.IPv4Interface]:
    """The IPv4 addresses `ifname` holds now in `namespace` (None = root).

    Empty when the namespace or the interface does not exist. Other
    namespaces are read with `ip -n` (no fork of this process: safe next to
    gRPC threads).
    """
    if namespace is None:
        with IPRoute() as ipr:
            index = link_index(ipr, ifname)
            return [] if index is None else ipv4_of(ipr, index)
    if not namespace_exists(namespace):
        return []
    result = subprocess.run(
        ["ip", "-n", namespace, "-j", "-4", "addr", "show", "dev", ifname],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0 or not result.stdout.strip():
        return []
    return [
        ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}")
        for entry in json.loads(result.stdout)
        for info in entry.get("addr_info", [])
        if info.get("family") == "inet"
    ]


def holders_of(cfg: ClusterConfig, address: ipaddress.IPv4Address, ifname: str | None = None) -> list[str]:
    """Names of the nodes whose namespace really has `address` on `ifname`
    (default: the floating IP's interface). Read from the kernel, not believed."""
    ifname = ifname or cfg.floating_ip.interface
    return [
        node.name for node in cfg.nodes if any(a.ip == address for a in interface_addresses(node.namespace, ifname))
    ]


def _netns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def pids_in_netns(namespace: str) -> list[int]:
    """Processes whose network namespace is `namespace` (by inode)."""
    target = _netns_inode(str(NETNS_RUN_DIR / namespace))
    if target is None:
        return []
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and _netns_inode(f"/proc/{entry.name}/ns/net") == target:
            pids.append(int(entry.name))
    return sorted(pids)
