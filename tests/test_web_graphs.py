"""The graphs' arithmetic: front-end metrics pages into rates and a p99 (web/prom_scrape.py)."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from nodeconf.frontend_metrics import FrontEndMetrics
from web.prom_scrape import between, parse, quantile


def _page(metrics: FrontEndMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_rates_by_command_and_p99_over_an_interval() -> None:
    m = FrontEndMetrics("imapd")
    m.session_opened()
    for _ in range(50):
        m.command("FETCH", "OK", 0.002)
    before = parse(_page(m))
    for _ in range(99):
        m.command("FETCH", "OK", 0.002)  # in the (0.001, 0.0025] bucket
    m.command("LOGIN", "NO", 0.4)  # one slow command in (0.25, 0.5]
    m.command("LOGIN", "OK", 0.3)
    after = parse(_page(m))
    assert after.sessions == 1.0
    interval = between(before, after, 10.0)
    assert interval is not None
    assert interval.commands_per_s == pytest.approx({"FETCH": 9.9, "LOGIN": 0.2})
    # 101 observations: rank 99.99 falls in the 0.25-0.5 bucket, holding the last two.
    assert interval.p99_s is not None and 0.25 < interval.p99_s <= 0.5
    # Fast commands only: p99 inside their bucket.
    m2 = FrontEndMetrics("imapd")
    first = parse(_page(m2))
    for _ in range(100):
        m2.command("NOOP", "OK", 0.002)
    quiet = between(first, parse(_page(m2)), 1.0)
    assert quiet is not None and quiet.p99_s is not None and 0.001 < quiet.p99_s <= 0.0025


def test_lmtpd_deliveries_and_a_restart_between_readings() -> None:
    m = FrontEndMetrics("lmtpd")
    before = parse(_page(m))
    for _ in range(6):
        m.deliveries.labels("delivered").inc()
    m.deliveries.labels("over quota").inc()
    after = parse(_page(m))
    interval = between(before, after, 2.0)
    assert interval is not None and interval.deliveries_per_s == 3.5 and interval.p99_s is None
    restarted = parse(_page(FrontEndMetrics("lmtpd")))
    assert between(after, restarted, 2.0) is None  # counters went down: no made-up rate


def test_quantile_edges() -> None:
    assert quantile(0.99, {}, {}) is None
    assert quantile(0.99, {0.1: 5.0, float("inf"): 5.0}, {0.1: 5.0, float("inf"): 5.0}) is None  # nothing new
    # Everything beyond the last finite bound: that bound, as Prometheus answers.
    assert quantile(0.99, {}, {0.1: 0.0, 30.0: 0.0, float("inf"): 4.0}) == 30.0
