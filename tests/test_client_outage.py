"""The client-visible outage bookkeeping of `mailha bench failover`."""

from bench.client_outage import OutageTracker, longest_in, outage_in


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


def test_outage_keeps_the_reconnect_steps_and_the_errors_before_it() -> None:
    t = OutageTracker()
    t.ok(1.0)
    t.error(2.0)
    t.error(2.1)
    t.error(2.2)
    t.ok(3.0, session_start=2.25, steps=(("tcp", 0.05), ("login", 0.5)))
    (o,) = t.outages
    assert o.errors == 3
    assert o.steps == (("tcp", 0.05), ("login", 0.5))
    assert o.before_session is not None and abs(o.before_session - 0.25) < 1e-9


def test_a_session_older_than_the_outage_says_nothing_about_the_reconnect() -> None:
    t = OutageTracker()
    t.error(5.0)
    t.ok(6.0, session_start=4.0, steps=(("tcp", 0.1),))
    (o,) = t.outages
    assert o.steps == () and o.before_session is None and o.errors == 1


def test_longest_in_returns_the_outage_itself() -> None:
    t = OutageTracker()
    t.error(10.0)
    t.ok(10.2, session_start=10.05, steps=(("select", 0.01),))
    t.error(10.5)
    t.ok(11.5, session_start=10.6, steps=(("select", 0.02),))
    found = longest_in(t.outages, 9.0, 12.0)
    assert found is not None and found.steps == (("select", 0.02),)
    assert longest_in(t.outages, 30.0, 40.0) is None
