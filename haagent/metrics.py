"""Prometheus metrics of one agent, served on ports.metrics at the node's
own address inside its namespace. IMAP sessions and command latencies are
imapd's to export; the agent exports what it knows."""

from __future__ import annotations

import pathlib

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from haagent.states import AgentState
from store.layout import data_file


class AgentMetrics:
    def __init__(self, node: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.state = Gauge(
            "mailha_agent_state", "1 for the agent's current state", ["node", "state"], registry=self.registry
        )
        self.epoch = Gauge(
            "mailha_agent_epoch", "writer epoch this node holds (0: none)", ["node"], registry=self.registry
        )
        self.transitions = Counter(
            "mailha_agent_transitions", "state transitions of the agent", ["node"], registry=self.registry
        )
        self.healthy = Gauge(
            "mailha_agent_services_healthy", "1 when the services pass their checks", ["node"], registry=self.registry
        )
        self.store_size = Gauge(
            "mailha_store_size_bytes", "size of the LMDB data file on shared storage", ["node"], registry=self.registry
        )
        self.node = node
        self._transitions_seen = 0

    def update(self, state: AgentState, epoch: int, transitions: int, healthy: bool, store_dir: pathlib.Path) -> None:
        for s in AgentState:
            self.state.labels(self.node, s.value).set(1 if s is state else 0)
        self.epoch.labels(self.node).set(epoch)
        if transitions > self._transitions_seen:
            self.transitions.labels(self.node).inc(transitions - self._transitions_seen)
            self._transitions_seen = transitions
        self.healthy.labels(self.node).set(1 if healthy else 0)
        try:
            self.store_size.labels(self.node).set(data_file(store_dir).stat().st_size)
        except OSError:
            self.store_size.labels(self.node).set(0)

    def serve(self, address: str, port: int) -> None:
        """Start the HTTP exporter in a daemon thread."""
        start_http_server(port, addr=address, registry=self.registry)
