"""Samples each node's services every few seconds into a bounded in-memory history.

Per sample and node: IMAP sessions (imapd's established TCP connections),
deliveries/s (new delivery-log records since the last sample, from the
store this web talks to), CPU % and resident memory per service, and the
store's file size. `keep` samples per node (default 1,440: two hours at
5 s); older ones fall off.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import anyio
import anyio.to_thread

from mailha_api import settings_pb2
from web.proc_probe import ProcessFacts, node_processes
from web.store_access import AdminError, StoreAccess

SERVICES = ("store", "imapd", "lmtpd", "web")


@dataclass(frozen=True)
class Sample:
    time: float
    imap_sessions: int
    deliveries_per_s: float
    cpu_percent: dict[str, float]
    rss_mib: dict[str, float]
    store_mib: float | None


@dataclass
class _NodeState:
    samples: deque[Sample]
    last_cpu: dict[int, tuple[float, float]] = field(default_factory=dict)  # pid -> (monotonic, cpu s)


class MetricsSampler:
    def __init__(self, store: StoreAccess, nodes: dict[str, str], *, interval: float = 5.0, keep: int = 1440) -> None:
        """nodes: node name -> its store socket path."""
        self.store = store
        self.nodes = nodes
        self.interval = interval
        self._state = {name: _NodeState(deque(maxlen=keep)) for name in nodes}
        self._last_delivery_ms = int(time.time() * 1000)
        self._last_time = time.monotonic()

    def samples(self, node: str) -> list[Sample]:
        state = self._state.get(node)
        return [] if state is None else list(state.samples)

    async def run(self) -> None:
        while True:
            await self.sample_once()
            await anyio.sleep(self.interval)

    async def _deliveries_per_s(self) -> float:
        now_ms = int(time.time() * 1000)
        query = settings_pb2.SearchDeliveriesRequest(since_ms=self._last_delivery_ms + 1, limit=10_000)
        try:
            found = await self.store.call(lambda a: a.deliveries(query))
        except AdminError:
            return 0.0
        elapsed = max(0.001, time.monotonic() - self._last_time)
        self._last_delivery_ms = now_ms
        return len([r for r in found if r.time_ms <= now_ms]) / elapsed

    async def sample_once(self) -> None:
        deliveries = await self._deliveries_per_s()
        self._last_time = time.monotonic()
        for name, socket_path in self.nodes.items():
            facts, size = await anyio.to_thread.run_sync(node_processes, socket_path)
            self._state[name].samples.append(self._sample(self._state[name], facts, size, deliveries))

    def _sample(self, state: _NodeState, facts: list[ProcessFacts], size: int | None, deliveries: float) -> Sample:
        now = time.monotonic()
        cpu: dict[str, float] = {}
        rss: dict[str, float] = {}
        seen: dict[int, tuple[float, float]] = {}
        for p in facts:
            before = state.last_cpu.get(p.pid)
            if before is not None and now > before[0]:
                cpu[p.service] = cpu.get(p.service, 0.0) + 100.0 * (p.cpu_seconds - before[1]) / (now - before[0])
            rss[p.service] = rss.get(p.service, 0.0) + p.rss_bytes / 2**20
            seen[p.pid] = (now, p.cpu_seconds)
        state.last_cpu = seen
        return Sample(
            time=time.time(),
            imap_sessions=sum(p.tcp_established for p in facts if p.service == "imapd"),
            deliveries_per_s=deliveries,
            cpu_percent=cpu,
            rss_mib=rss,
            store_mib=None if size is None else size / 2**20,
        )
