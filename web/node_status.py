"""What the console shows as the cluster's state: the HA agents' status (with --config)
or the single standalone node, as one dict shaped like `mailha status --json`.

Cluster mode calls haagent.operator (ZooKeeper, the namespaces' interfaces)
in a worker thread; standalone mode asks the store for its epoch.
"""

from __future__ import annotations

import socket
import time
from dataclasses import asdict
from typing import Any

import anyio.to_thread

from mailha_api import store_pb2
from nodeconf.config import ClusterConfig
from nodeconf.paths import store_socket_path
from web.store_access import StoreAccess

OPERATOR_NODE = "operator"  # the history's "node" of entries written for an operator's action


class NodeStatus:
    def __init__(self, store: StoreAccess, cluster: ClusterConfig | None) -> None:
        self.store = store
        self.cluster = cluster

    @property
    def mode(self) -> str:
        return "cluster" if self.cluster is not None else "standalone"

    async def status(self) -> dict[str, Any]:
        if self.cluster is not None:
            from haagent.operator import cluster_status

            cluster = self.cluster
            status = await anyio.to_thread.run_sync(lambda: cluster_status(cluster))
            status["mode"] = "cluster"
            active = status.get("active")
            if isinstance(active, str) and active:
                # Only the active node runs a store on the shared storage: follow it.
                self.store.retarget(f"unix:{store_socket_path(cluster, active)}")
            return status
        reply = await self.store.call(lambda a: a.client.stub.GetEpoch(_epoch_request(), timeout=5))
        name = socket.gethostname()
        return {
            "mode": "standalone",
            "cluster": "standalone",
            "active": name,
            "epoch": int(reply.epoch),
            "paused": False,
            "switchover_pending": None,
            "nodes": [
                {
                    "name": name,
                    "address": "127.0.0.1",
                    "state": "active" if reply.writable else "fenced",
                    "health": "ok" if reply.writable else "writes suspended",
                    "epoch": int(reply.epoch),
                    "says": f"standalone store, epoch {reply.epoch}",
                }
            ],
            "floating_ip": None,
            "floating_ip_holder": [],
            "ensemble": None,
            "zookeeper_error": None,
        }

    async def history(self) -> list[dict[str, Any]]:
        if self.cluster is None:
            return []
        from haagent.operator import read_history

        cluster = self.cluster
        entries = await anyio.to_thread.run_sync(lambda: read_history(cluster))
        return [asdict(e) for e in entries]

    async def record_operator(self, user: str, action: str, detail: str) -> None:
        """Put an operator's action into the agents' history (node "operator"), so `mailha history`
        and the timeline show who did what and why beside the transitions it caused."""
        if self.cluster is None:
            return
        from haagent.agent import connect_coordination
        from haagent.coordination import HistoryEntry

        cluster = self.cluster

        def append() -> None:
            coord = connect_coordination(cluster, deadline=time.monotonic() + 10)
            try:
                epoch = coord.snapshot().epoch_counter
                entry = HistoryEntry(time.time(), OPERATOR_NODE, "operator", action, epoch, f"{user}: {detail}")
                coord.append_history((entry,))
            finally:
                coord.close()

        await anyio.to_thread.run_sync(append)

    async def switchover(self, to: str | None) -> str:
        if self.cluster is None:
            raise RuntimeError("switchover needs a cluster (mailha web --config)")
        from haagent.operator import switchover

        cluster = self.cluster
        result = await anyio.to_thread.run_sync(lambda: switchover(cluster, to))
        return f"{result.source} -> {result.target}, epoch {result.epoch}, unavailable {result.unavailable_s:.2f} s"

    async def set_paused(self, paused: bool) -> None:
        if self.cluster is None:
            raise RuntimeError("pause/resume needs a cluster (mailha web --config)")
        from haagent.operator import set_paused

        cluster = self.cluster
        await anyio.to_thread.run_sync(lambda: set_paused(cluster, paused))


def _epoch_request() -> Any:

    return store_pb2.GetEpochRequest()
