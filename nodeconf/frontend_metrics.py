"""Prometheus metrics of a front end (imapd, lmtpd): sessions, commands by
name and result, command latency, and (lmtpd) deliveries by outcome. Each
process has its own registry, served with `--metrics-listen HOST:PORT`.
Labels carry command names and outcomes only, never arguments.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class FrontEndMetrics:
    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.sessions = Gauge(f"mailha_{service}_sessions", "sessions open now", registry=r)
        self.sessions_opened = Counter(f"mailha_{service}_sessions_opened", "sessions accepted", registry=r)
        self.commands = Counter(
            f"mailha_{service}_commands", "commands by name and result", ["command", "result"], registry=r
        )
        self.latency = Histogram(
            f"mailha_{service}_command_seconds",
            "time from a command to its reply",
            ["command"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.deliveries = Counter(
            f"mailha_{service}_deliveries", "deliveries (per recipient) by outcome", ["outcome"], registry=r
        )

    def session_opened(self) -> None:
        self.sessions.inc()
        self.sessions_opened.inc()

    def session_closed(self) -> None:
        self.sessions.dec()

    def command(self, name: str, result: str, seconds: float) -> None:
        self.commands.labels(name, result).inc()
        self.latency.labels(name).observe(seconds)

    def serve(self, host: str, port: int) -> None:
        """Serve /metrics on host:port (a daemon thread)."""
        start_http_server(port, addr=host, registry=self.registry)
