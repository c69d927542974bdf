"""The client-visible outage bookkeeping of `mailha bench failover`."""

from bench.client_outage import OutageTracker, outage_in


def test_outage_runs_from_first_error_to_next_ack() -> None:
    t = OutageTracker()
    t.ok(1.0)
    t.error(2.0)
    t.error(2.5)  # further errors do not move the start
    assert t.open_since == 2.0
    t.ok(3.25)
    t.ok(4.0)
    assert [(o.start, o.end) for o in t.outages] == [(2.0, 3.25)]
    assert t.open_since is None


def test_outage_in_takes_the_longest_that_began_in_the_window() -> None:
    t = OutageTracker()
    for err, ok in ((1.0, 1.5), (10.0, 10.2), (10.5, 11.5), (20.0, 20.1)):
        t.error(err)
        t.ok(ok)
    assert outage_in(t.outages, 9.0, 12.0) == 1.0
    assert abs(outage_in(t.outages, 19.5, 25.0) - 0.1) < 1e-9
    assert outage_in(t.outages, 30.0, 40.0) == 0.0
