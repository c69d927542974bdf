"""Writer intervals derived from the agents' transition history, and the checker's overlap rule on them."""

from __future__ import annotations

from chaos.agent_intervals import Transition, WriterInterval, writer_intervals
from chaos.checker import check
from chaos.history import Event, EventType, JsonValue, Op


def T(time: float, node: str, a: str, b: str, epoch: int) -> Transition:
    return Transition(time, node, a, b, epoch)


def _check(intervals: list[WriterInterval]) -> list[str]:
    value: dict[str, JsonValue] = {"intervals": [i.to_json() for i in intervals]}
    events = [
        Event(0, 0.0, 500.0, "probe", EventType.INVOKE, Op.AGENT_HISTORY, 0, {}),
        Event(1, 0.1, 500.1, "probe", EventType.OK, Op.AGENT_HISTORY, 0, value),
    ]
    return [v.rule for v in check(events).violations]


def test_clean_switchover() -> None:
    entries = [
        T(10, "node1", "fencing", "activating", 1),
        T(11, "node1", "activating", "active", 1),
        T(20, "node1", "active", "releasing", 1),
        T(21, "node1", "releasing", "standby", 1),
        T(22, "node2", "fencing", "activating", 2),
        T(23, "node2", "activating", "active", 2),
    ]
    got = writer_intervals(entries)
    assert got == [WriterInterval("node1", 1, 10, 20), WriterInterval("node2", 2, 22, None)]
    assert _check(got) == []


def test_killed_active_is_closed_by_the_takeover() -> None:
    entries = [
        T(10, "node1", "fencing", "activating", 1),
        T(11, "node1", "activating", "active", 1),
        # node1 killed: it records nothing more
        T(30, "node2", "fencing", "activating", 2),
        T(31, "node2", "activating", "active", 2),
    ]
    got = writer_intervals(entries)
    assert got == [WriterInterval("node1", 1, 10, 30), WriterInterval("node2", 2, 30, None)]
    assert _check(got) == []


def test_fenced_node_that_still_claims_activity_overlaps() -> None:
    entries = [
        T(10, "node1", "fencing", "activating", 1),
        T(11, "node1", "activating", "active", 1),
        T(30, "node2", "fencing", "activating", 2),
        T(31, "node2", "activating", "active", 2),
        T(33, "node1", "active", "suspended", 1),  # woke from SIGSTOP still believing it was active
    ]
    got = writer_intervals(entries)
    assert WriterInterval("node1", 1, 10, 33) in got
    assert _check(got) == ["agent-overlap"]


def test_suspended_then_resumed_is_two_intervals() -> None:
    entries = [
        T(1, "node1", "fencing", "activating", 1),
        T(2, "node1", "activating", "active", 1),
        T(5, "node1", "active", "suspended", 1),
        T(6, "node1", "suspended", "active", 1),
    ]
    assert writer_intervals(entries) == [WriterInterval("node1", 1, 1, 5), WriterInterval("node1", 1, 6, None)]
