"""Reading a front end's Prometheus endpoint (mailha/frontend_metrics.py) into rates and a p99.

`scrape` fetches and parses one /metrics page into a FrontEndReading
(cumulative counters as they are); `between` turns two readings into what the
graphs show for that interval: commands/s by command name, deliveries/s and
the p99 command latency, interpolated in the histogram's buckets as
Prometheus' histogram_quantile does. A restarted process (counters going
down) gives no rates for that one interval.
"""

from __future__ import annotations

import math
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

MAX_PAGE = 1 << 20  # a front end's page is a few KiB; never read more than this
TIMEOUT = 1.0


@dataclass(frozen=True)
class FrontEndReading:
    sessions: float
    commands: dict[str, float]  # command name -> total so far (every result)
    deliveries: float  # lmtpd: recipients delivered so far (every outcome)
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count, every command


@dataclass(frozen=True)
class Interval:
    commands_per_s: dict[str, float]
    deliveries_per_s: float
    p99_s: float | None  # None: no command in the interval


def parse(text: str) -> FrontEndReading:
    sessions = deliveries = 0.0
    commands: dict[str, float] = {}
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith("_sessions") and not s.name.endswith("_opened"):
                sessions = s.value
            elif s.name.endswith("_commands_total"):
                name = s.labels.get("command", "?")
                commands[name] = commands.get(name, 0.0) + s.value
            elif s.name.endswith("_deliveries_total"):
                deliveries += s.value
            elif s.name.endswith("_command_seconds_bucket"):
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
    return FrontEndReading(sessions, commands, deliveries, buckets)


def scrape(address: str) -> FrontEndReading | None:
    """None when nothing answers at address (HOST:PORT): the service is not running there."""
    try:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=TIMEOUT) as reply:
            return parse(reply.read(MAX_PAGE).decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None


def quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float | None:
    """The q-quantile of the observations between two cumulative bucket readings."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the last finite bucket: its bound, as Prometheus does
            width = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / width if width else 1.0)
        lower_bound, lower_count = bound, count
    return None


def between(before: FrontEndReading, after: FrontEndReading, seconds: float) -> Interval | None:
    """Rates over the interval; None if the process restarted in between (counters went down)."""
    if seconds <= 0 or after.deliveries < before.deliveries:
        return None
    if any(after.commands.get(k, 0.0) < v for k, v in before.commands.items()):
        return None
    rates = {k: (v - before.commands.get(k, 0.0)) / seconds for k, v in after.commands.items()}
    return Interval(
        commands_per_s={k: v for k, v in rates.items() if v > 0},
        deliveries_per_s=(after.deliveries - before.deliveries) / seconds,
        p99_s=quantile(0.99, before.buckets, after.buckets),
    )
