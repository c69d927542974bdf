"""The demo cluster as the chaos suite sees it: what to observe and where to hit.

Everything here goes through ha-infra's helpers (namespaces, nftables
partitions, the ZooKeeper ensemble) and the store's public GetEpoch; the
only knowledge of the agent is its ZooKeeper records, read the way the
agents write them (haagent.coordination), and the operator's
public functions (history, switchover) and `cluster.start_agent`.
"""

from __future__ import annotations

import ipaddress
import os
import pathlib
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from typing import Protocol

import grpc

from chaos.agent_intervals import Transition
from haagent.errors import HaAgentError
from haagent.floating_ip import addresses_in_namespace
from haagent.front_ends import service_probe
from haagent.netns import pids_in_netns
from haagent.operator import cluster_status, read_history, switchover
from haagent.supervisor import store_epoch
from lab.cluster import start_agent
from lab.partition import PartitionKind, heal, partition
from lab.zk_ensemble import Ensemble
from nodeconf.config import ClusterConfig
from nodeconf.paths import store_address
from store.client import StoreClient


class TargetError(Exception):
    """The cluster could not be observed or acted on as asked."""


class Target(Protocol):
    """What the nemesis needs from a cluster; the tests give it a fake."""

    def active_node(self) -> str | None: ...
    def node_pids(self, node: str) -> list[int]: ...
    def service_pids(self, node: str, service: str) -> list[int]: ...
    def kill(self, pids: Iterable[int], sig: signal.Signals) -> int: ...
    def partition(self, node: str, kind: str) -> None: ...
    def heal_partition(self, node: str) -> None: ...
    def zk_leader(self) -> int | None: ...
    def zk_members(self) -> list[int]: ...
    def zk_stop(self, member_id: int) -> None: ...
    def zk_start(self, member_id: int) -> None: ...
    def restore_nodes(self) -> None: ...
    def switchover(self) -> None: ...
    def wait_active(self, timeout: float, other_than: str | None = None) -> str | None: ...
    def session_timeout(self) -> float: ...


def _cmdline(pid: int) -> str:
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class ClusterTarget:
    """The real demo cluster described by cluster.yaml."""

    def __init__(self, cfg: ClusterConfig) -> None:
        self.cfg = cfg

    # -- observing -----------------------------------------------------------

    def vip(self) -> ipaddress.IPv4Address:
        return self.cfg.floating_ip.address.ip

    def vip_holders(self) -> list[str]:
        """Nodes seen holding the floating IP in two passes taken in opposite orders."""
        # `ip -n`, not pyroute2's netns support: that forks, and a fork next to gRPC threads can crash.

        def holds(node_name: str) -> bool:
            node = self.cfg.node(node_name)
            return any(
                a.ip == self.vip() for a in addresses_in_namespace(node.namespace, self.cfg.floating_ip.interface)
            )

        names = [n.name for n in self.cfg.nodes]
        first = {n for n in names if holds(n)}
        second = {n for n in reversed(names) if holds(n)}
        return sorted(first & second)

    def store_epoch(self, node: str) -> int | None:
        """The stored writer epoch read through `node`'s store socket (None: no store there)."""
        address = store_address(self.cfg, node)
        if not pathlib.Path(address.removeprefix("unix:")).exists():
            return None
        return store_epoch(address, timeout=1.0)[0]

    def store_address(self, node: str) -> str:
        return store_address(self.cfg, node)

    def agent_history(self) -> list[Transition]:
        return [Transition(e.time, e.node, e.from_state, e.to_state, e.epoch) for e in read_history(self.cfg)]

    def active_node(self) -> str | None:
        holders = self.vip_holders()
        return holders[0] if len(holders) == 1 else None

    def wait_active(self, timeout: float, other_than: str | None = None) -> str | None:
        """The node serving on the floating IP (the agent's own service probe), waiting up to `timeout`."""
        port, greeting = service_probe(self.cfg)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            node = self.active_node()
            if node is not None and node != other_than and self.greets(port, greeting):
                return node
            time.sleep(0.2)
        return None

    def greets(self, port: int, greeting: bytes) -> bool:
        """Whether the floating IP answers on `port` with a first line starting with `greeting`."""
        try:
            with socket.create_connection((str(self.vip()), port), timeout=1.0) as sock:
                sock.settimeout(1.0)
                data = b""
                while b"\r\n" not in data and len(data) < 512:
                    chunk = sock.recv(512)
                    if not chunk:
                        break
                    data += chunk
                return data.startswith(greeting)
        except OSError:
            return False

    def imap_serves(self) -> bool:
        return self.greets(self.cfg.ports.imap, b"* OK")

    def session_timeout(self) -> float:
        return self.cfg.zookeeper.session_timeout

    # -- processes -----------------------------------------------------------

    def node_pids(self, node: str) -> list[int]:
        me = os.getpid()
        return [p for p in pids_in_netns(self.cfg.node(node).namespace) if p != me]

    def service_pids(self, node: str, service: str) -> list[int]:
        """Processes of `node` running `service` ("agent", "imapd", "lmtpd").

        Front ends are found by the port they listen on (`ss` in the node's namespace): the agent
        runs them from pre-started `mailha.prestart NAME` processes, so a command line cannot tell
        a serving imapd from an idle spare.
        """
        if service == "agent":
            return [
                pid
                for pid in self.node_pids(node)
                if " mailha.cli agent " in " " + _cmdline(pid) + " " and "setpriv" not in _cmdline(pid)
            ]
        port = {"imapd": self.cfg.ports.imap, "lmtpd": self.cfg.ports.lmtp}[service]
        proc = subprocess.run(
            ["ip", "netns", "exec", self.cfg.node(node).namespace, "ss", "-H", "-ltnp", f"sport = :{port}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return sorted({int(m) for m in re.findall(r"pid=(\d+)", proc.stdout)})

    def kill(self, pids: Iterable[int], sig: signal.Signals) -> int:
        n = 0
        for pid in pids:
            try:
                os.kill(pid, sig)
                n += 1
            except ProcessLookupError:
                pass
        return n

    # -- network ---------------------------------------------------------------

    def partition(self, node: str, kind: str) -> None:
        partition(self.cfg, node, PartitionKind(kind))

    def heal_partition(self, node: str) -> None:
        heal(self.cfg, node)

    # -- ZooKeeper -------------------------------------------------------------

    def zk_leader(self) -> int | None:
        return Ensemble(self.cfg.zookeeper).leader()

    def zk_members(self) -> list[int]:
        return [m.id for m in self.cfg.zookeeper.members]

    def zk_stop(self, member_id: int) -> None:
        Ensemble(self.cfg.zookeeper).stop_member(member_id, timeout=0.0, sig=signal.SIGKILL)

    def zk_start(self, member_id: int) -> None:
        Ensemble(self.cfg.zookeeper).start_member(member_id, timeout=30.0)

    # -- whole-cluster actions ---------------------------------------------------

    def restore_nodes(self) -> None:
        """Bring back every node's agent (after kills and fencing), as `mailha cluster up` starts them."""
        for node in self.cfg.nodes:
            start_agent(self.cfg, node.name)

    def switchover(self) -> None:
        # A switchover needs a healthy standby; right after the previous one the old active may
        # still be releasing. Wait (bounded) for one instead of failing the request.
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            try:
                status = cluster_status(self.cfg)
            except HaAgentError:
                status = {}
            nodes = status.get("nodes")
            if isinstance(nodes, list) and any(
                isinstance(n, dict) and n.get("state") == "standby" and n.get("health") in ("ok", "stopped")
                for n in nodes
            ):
                break
            time.sleep(0.3)
        try:
            switchover(self.cfg)
        except HaAgentError as exc:
            raise TargetError(f"switchover: {exc}") from exc
        except RuntimeError as exc:
            # operator.switchover joins its probe thread even when it failed before starting it.
            raise TargetError(f"switchover failed before it started: {exc}") from exc

    def create_user(self, node: str, user: str, password: str, address: str) -> None:
        """The workload's user, through `node`'s store (an existing one is fine)."""

        with StoreClient(self.store_address(node), timeout=10) as client:
            # Right after (re)start the agent's store is not yet fenced to a writable epoch.
            epoch = client.writable_epoch(30.0)
            requests = (
                lambda: client.create_user(user, password, epoch=epoch),
                lambda: client.add_address(address, user, epoch=epoch),
            )
            for call in requests:
                try:
                    call()
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                        raise TargetError(f"creating {user} on {node}: {exc.code().name} {exc.details()}") from None
