"""Samples each node's services every few seconds into a bounded in-memory history.

Per sample and node: from the node's imapd and lmtpd Prometheus endpoints
(when it has them: web/prom_scrape.py) IMAP sessions, commands/s by kind,
deliveries/s and each service's p99 command latency over the interval;
from /proc CPU % and resident memory per service and the store's file size.
Without endpoints, IMAP sessions are imapd's established TCP connections and
deliveries/s the new delivery-log records of the store this web talks to.
`keep` samples per node (default 1,440: two hours at 5 s); older ones fall off.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, replace

import anyio
import anyio.to_thread

from mailha_api import settings_pb2
from web import prom_scrape
from web.proc_probe import ProcessFacts, node_processes
from web.prom_scrape import FrontEndReading
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
    commands_per_s: dict[str, float] = field(default_factory=dict)  # "imapd FETCH" -> rate
    p99_ms: dict[str, float] = field(default_factory=dict)  # service -> p99 command latency


@dataclass
class _NodeState:
    samples: deque[Sample]
    last_cpu: dict[int, tuple[float, float]] = field(default_factory=dict)  # pid -> (monotonic, cpu s)
    last_reading: dict[str, tuple[float, FrontEndReading]] = field(default_factory=dict)  # service -> (monotonic, …)


class MetricsSampler:
    def __init__(
        self,
        store: StoreAccess,
        nodes: dict[str, str],
        *,
        interval: float = 5.0,
        keep: int = 1440,
        endpoints: dict[str, dict[str, str]] | None = None,
    ) -> None:
        """nodes: node name -> its store socket path; endpoints: node -> service -> HOST:PORT
        of that service's Prometheus metrics (imapd, lmtpd)."""
        self.store = store
        self.nodes = nodes
        self.endpoints = endpoints or {}
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
            sample = self._sample(self._state[name], facts, size, deliveries)
            endpoints = self.endpoints.get(name)
            if endpoints:
                sample = await self._with_front_ends(self._state[name], sample, endpoints)
            self._state[name].samples.append(sample)

    async def _with_front_ends(self, state: _NodeState, sample: Sample, endpoints: dict[str, str]) -> Sample:
        """The sample with what the node's front ends export (a front end not running: zeros)."""
        sessions = 0.0
        deliveries = 0.0
        commands: dict[str, float] = {}
        p99: dict[str, float] = {}
        for service, address in sorted(endpoints.items()):
            reading = await anyio.to_thread.run_sync(prom_scrape.scrape, address)
            now = time.monotonic()
            before = state.last_reading.pop(service, None)
            if reading is None:
                continue
            state.last_reading[service] = (now, reading)
            if service == "imapd":
                sessions = reading.sessions
            if before is None:
                continue
            interval = prom_scrape.between(before[1], reading, now - before[0])
            if interval is None:
                continue
            commands.update({f"{service} {k}": v for k, v in interval.commands_per_s.items()})
            if service == "lmtpd":
                deliveries = interval.deliveries_per_s
            if interval.p99_s is not None:
                p99[service] = interval.p99_s * 1000
        return replace(
            sample, imap_sessions=int(sessions), deliveries_per_s=deliveries, commands_per_s=commands, p99_ms=p99
        )

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
