"""The history checker on synthetic histories: each rule must catch its break and pass the clean case."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from chaos.checker import CheckResult, check
from chaos.history import Event, EventType, HistoryError, JsonValue, Op


@dataclass
class H:
    """Builds a history with explicit times (seconds)."""

    events: list[Event] = field(default_factory=list)
    next_op: int = 0

    def _add(self, t: float, *, process: str, type_: EventType, f: Op, op_id: int, value: dict[str, JsonValue]) -> None:
        self.events.append(Event(len(self.events), t, 1000.0 + t, process, type_, f, op_id, value))

    def op(
        self,
        f: Op,
        start: float,
        end: float | None,
        outcome: EventType = EventType.OK,
        *,
        process: str = "p",
        invoke: dict[str, JsonValue] | None = None,
        reply: dict[str, JsonValue] | None = None,
    ) -> int:
        op_id = self.next_op
        self.next_op += 1
        self._add(start, process=process, type_=EventType.INVOKE, f=f, op_id=op_id, value=dict(invoke or {}))
        if end is not None:
            self._add(end, process=process, type_=outcome, f=f, op_id=op_id, value=dict(reply or {}))
        return op_id

    def append(
        self,
        cid: str,
        start: float,
        end: float | None,
        outcome: EventType = EventType.OK,
        *,
        uid: int | None = None,
        mailbox: str = "INBOX",
        uidvalidity: int = 7,
        scratch: bool = False,
    ) -> None:
        reply: dict[str, JsonValue] = {}
        if outcome is EventType.OK and uid is not None:
            reply = {"uid": uid, "uidvalidity": uidvalidity}
        self.op(
            Op.APPEND,
            start,
            end,
            outcome,
            invoke={"chaos_id": cid, "mailbox": mailbox, "scratch": scratch},
            reply=reply,
        )

    def final(self, t: float, found: list[tuple[int, str | None]], mailbox: str = "INBOX", **extra: int) -> None:
        messages: list[JsonValue] = [{"uid": uid, "chaos_id": cid} for uid, cid in found]
        reply: dict[str, JsonValue] = {"mailbox": mailbox, "uidvalidity": 7, "messages": messages}
        reply.update(extra)
        self.op(Op.FINAL_READ, t, t + 0.1, invoke={"mailbox": mailbox}, reply=reply)

    def check(self) -> CheckResult:
        return check(self.events)


def rules(result: CheckResult) -> list[str]:
    return sorted(v.rule for v in result.violations)


def test_clean_history_is_valid_and_counted() -> None:
    h = H()
    h.append("a", 0.0, 0.1, uid=1)
    h.append("b", 0.2, 0.3, uid=2)
    h.append("c", 0.4, 0.5, EventType.FAIL)
    h.append("d", 0.6, None)  # never completed: unknown
    h.append("e", 0.7, 0.8, EventType.UNKNOWN)
    h.final(5.0, [(1, "a"), (2, "b"), (3, "e")])
    r = h.check()
    assert r.valid, r.violations
    assert (r.acknowledged, r.failed, r.unknown) == (2, 1, 2)
    assert (r.writes_acknowledged, r.writes_failed, r.writes_unknown) == (2, 1, 2)
    assert (r.unknown_present, r.unknown_absent) == (1, 1)
    assert r.final_read


def test_acknowledged_but_absent_is_lost() -> None:
    h = H()
    h.append("a", 0.0, 0.1, uid=1)
    h.append("b", 0.2, 0.3, uid=2)
    h.final(5.0, [(2, "b")])
    r = h.check()
    assert r.lost == ("a",)
    assert not r.valid


def test_present_twice_is_duplicated() -> None:
    h = H()
    h.append("a", 0.0, 0.1, uid=1)
    h.append("b", 0.0, 0.2, EventType.UNKNOWN)
    h.final(5.0, [(1, "a"), (2, "b"), (3, "b")])
    r = h.check()
    assert r.duplicated == ("b",)
    assert r.lost == ()


def test_never_attempted_and_untagged_messages_are_unexpected() -> None:
    h = H()
    h.append("a", 0.0, 0.1, uid=1)
    h.final(5.0, [(1, "a"), (2, "ghost"), (3, None)])
    assert rules(h.check()) == ["unexpected", "unexpected"]


def test_refused_write_that_is_present_is_a_violation() -> None:
    h = H()
    h.append("a", 0.0, 0.1, EventType.FAIL)
    h.final(5.0, [(1, "a")])
    assert rules(h.check()) == ["failed-present"]


def test_scratch_messages_may_vanish_only_when_expunged() -> None:
    h = H()
    h.append("s1", 0.0, 0.1, uid=1, scratch=True)
    h.append("s2", 0.0, 0.1, uid=2, scratch=True)
    h.append("s3", 0.0, 0.1, uid=3, scratch=True)
    h.op(Op.EXPUNGE, 1.0, 1.1, invoke={"mailbox": "INBOX", "chaos_ids": ["s1"]})
    h.op(Op.EXPUNGE, 1.0, 1.1, invoke={"mailbox": "INBOX", "chaos_ids": ["s2"]})
    h.final(5.0, [(2, "s2")])  # s1 expunged; s2 expunge acked yet present; s3 never expunged yet gone
    r = h.check()
    assert r.lost == ("s3",)
    assert rules(r) == ["expunged-present"]


def test_scratch_expunge_with_unknown_outcome_may_leave_it() -> None:
    h = H()
    h.append("s1", 0.0, 0.1, uid=1, scratch=True)
    h.op(Op.EXPUNGE, 1.0, 1.1, EventType.UNKNOWN, invoke={"mailbox": "INBOX", "chaos_ids": ["s1"]})
    h.final(5.0, [(1, "s1")])
    assert h.check().valid


def test_message_found_elsewhere_or_under_another_uid() -> None:
    h = H()
    h.append("a", 0.0, 0.1, uid=1, mailbox="A")
    h.append("b", 0.0, 0.1, uid=2, mailbox="B")
    h.final(5.0, [(1, "b")], mailbox="A")
    h.final(5.0, [(5, "b")], mailbox="B")
    r = h.check()
    assert r.lost == ("a",)
    assert r.duplicated == ("b",)
    assert rules(r) == ["uid-changed", "wrong-mailbox"]


def test_mailbox_never_read_back_is_unchecked_not_lost() -> None:
    h = H()
    h.append("a", 0.0, 0.1, uid=1, mailbox="A")
    h.append("b", 0.0, 0.1, uid=1, mailbox="B")
    h.final(5.0, [(1, "a")], mailbox="A")
    r = h.check()
    assert r.lost == ()
    assert rules(r) == ["unchecked"]


def test_no_final_read_cannot_be_valid() -> None:
    h = H()
    h.append("a", 0.0, 0.1, uid=1)
    r = h.check()
    assert not r.final_read
    assert rules(r) == ["unchecked"]


def test_uidvalidity_change_is_a_violation() -> None:
    h = H()
    h.append("a", 0.0, 0.1, uid=1, uidvalidity=7)
    h.append("b", 0.2, 0.3, uid=2, uidvalidity=8)
    h.final(5.0, [(1, "a"), (2, "b")])  # final read says 7
    assert rules(h.check()) == ["uidvalidity", "uidvalidity"]


def test_uid_reused_for_two_messages() -> None:
    h = H()
    h.append("s", 0.0, 0.1, uid=4, scratch=True)
    h.op(Op.EXPUNGE, 0.2, 0.3, invoke={"mailbox": "INBOX", "chaos_ids": ["s"]})
    h.append("a", 0.0, 0.5, uid=4)  # concurrent with s, so only reuse is wrong, not order
    h.final(5.0, [(4, "a")])
    assert rules(h.check()) == ["uid-reused"]


def test_uids_must_increase_in_real_time_order_only() -> None:
    h = H()
    h.append("a", 0.0, 1.0, uid=5)
    h.append("b", 0.5, 1.5, uid=3)  # concurrent with a: any order is fine
    h.append("c", 2.0, 2.1, uid=4)  # invoked after a (uid 5) was acknowledged: must exceed 5
    h.final(5.0, [(5, "a"), (3, "b"), (4, "c")])
    r = h.check()
    assert rules(r) == ["uid-order"]
    assert "c got UID 4" in r.violations[0].detail


def test_uidnext_and_highestmodseq_never_decrease() -> None:
    h = H()
    status: dict[str, JsonValue] = {"mailbox": "INBOX", "uidvalidity": 7}
    h.op(Op.STATUS, 0.0, 0.1, invoke=status, reply={"uidnext": 5, "highestmodseq": 10})
    h.op(Op.STATUS, 0.05, 0.2, invoke=status, reply={"uidnext": 4, "highestmodseq": 9})  # concurrent: fine
    h.op(Op.STATUS, 0.3, 0.4, invoke=status, reply={"uidnext": 5, "highestmodseq": 12})
    h.op(Op.STATUS, 0.5, 0.6, invoke=status, reply={"uidnext": 6, "highestmodseq": 11})
    r = h.check()
    assert rules(r) == ["highestmodseq"]


def test_acknowledged_uid_bounds_later_uidnext() -> None:
    h = H()
    h.append("a", 0.0, 0.1, uid=9)
    h.op(Op.STATUS, 0.2, 0.3, invoke={"mailbox": "INBOX", "uidvalidity": 7}, reply={"uidnext": 9})
    h.final(5.0, [(9, "a")], uidnext=10)
    r = h.check()
    assert rules(r) == ["uidnext"]
    assert "from 10 back to 9" in r.violations[0].detail


def test_store_epoch_never_goes_backwards_and_rises_count_failovers() -> None:
    h = H()
    for t, epoch in ((0.0, 3), (1.0, 3), (2.0, 4), (3.0, 5)):
        h.op(Op.EPOCH, t, t + 0.1, process="sampler", invoke={"node": "node1"}, reply={"epoch": epoch})
    r = h.check()
    assert r.valid
    assert r.failovers == 2
    h.op(Op.EPOCH, 4.0, 4.1, process="sampler", invoke={"node": "node2"}, reply={"epoch": 4})
    assert rules(h.check()) == ["epoch"]


def _agent(h: H, t: float, node: str, role: str, epoch: int) -> None:
    h.op(Op.AGENT, t, t + 0.05, process=f"agent-{node}", invoke={"node": node}, reply={"role": role, "epoch": epoch})


def test_agents_active_in_turn_is_fine() -> None:
    h = H()
    for t in (0.0, 1.0, 2.0):
        _agent(h, t, "node1", "active", 1)
        _agent(h, t, "node2", "standby", 1)
    for t in (3.0, 4.0, 5.0):
        _agent(h, t, "node1", "standby", 2)
        _agent(h, t, "node2", "active", 2)
    r = h.check()
    assert r.valid, r.violations
    assert r.failovers == 1


def test_two_active_agents_at_once_are_caught() -> None:
    h = H()
    for t in (0.0, 1.0, 2.0, 3.0):
        _agent(h, t, "node1", "active", 1)
    for t in (2.5, 3.5):
        _agent(h, t, "node2", "active", 2)
    assert rules(h.check()) == ["agent-overlap"]


def test_one_epoch_claimed_by_two_nodes() -> None:
    h = H()
    _agent(h, 0.0, "node1", "active", 3)
    _agent(h, 5.0, "node2", "active", 3)
    assert rules(h.check()) == ["agent-epoch"]


def test_agent_history_intervals_must_not_overlap() -> None:
    intervals: list[JsonValue] = [
        {"node": "node1", "epoch": 1, "start": 100.0, "end": 110.0},
        {"node": "node2", "epoch": 2, "start": 110.0, "end": 120.0},
        {"node": "node1", "epoch": 3, "start": 120.0, "end": None},
    ]
    h = H()
    h.op(Op.AGENT_HISTORY, 30.0, 30.1, reply={"intervals": intervals})
    assert h.check().valid
    bad: list[JsonValue] = [*intervals, {"node": "node2", "epoch": 4, "start": 125.0, "end": 126.0}]
    h2 = H()
    h2.op(Op.AGENT_HISTORY, 30.0, 30.1, reply={"intervals": bad})  # node1's interval is still open at wall 1030
    assert rules(h2.check()) == ["agent-overlap"]


def test_floating_ip_held_twice() -> None:
    h = H()
    h.op(Op.VIP, 0.0, 0.1, reply={"holders": ["node1"]})
    h.op(Op.VIP, 1.0, 1.1, reply={"holders": []})
    assert h.check().valid
    h.op(Op.VIP, 2.0, 2.1, reply={"holders": ["node1", "node2"]})
    assert rules(h.check()) == ["vip-double"]


def test_faults_and_unavailability() -> None:
    h = H()
    h.op(Op.NEMESIS, 1.0, 1.2, process="nemesis", invoke={"fault": "kill-active", "phase": "inject"})
    h.op(Op.NEMESIS, 4.0, 4.1, process="nemesis", invoke={"fault": "kill-active", "phase": "heal"})
    h.op(Op.NEMESIS, 5.0, 5.1, EventType.FAIL, process="nemesis", invoke={"fault": "x", "phase": "inject"})
    h.op(Op.FETCH, 0.0, 0.5)
    h.op(Op.FETCH, 0.6, 1.0)
    h.op(Op.FETCH, 1.0, 2.0, EventType.UNKNOWN)
    h.op(Op.FETCH, 2.0, 4.5, EventType.FAIL)
    h.op(Op.FETCH, 4.5, 4.6)
    h.op(Op.IDLE, 4.6, 5.0)
    r = h.check()
    assert r.faults == 1
    assert r.max_unavailability == pytest.approx(3.6)
    assert (r.acknowledged, r.failed, r.unknown) == (4, 1, 1)


def test_history_must_be_well_formed() -> None:
    h = H()
    h.append("a", 0.0, 0.1, uid=1)
    h.append("a", 0.2, 0.3, uid=2)
    with pytest.raises(HistoryError, match="written twice"):
        h.check()
    stray = [Event(0, 0.0, 0.0, "p", EventType.OK, Op.FETCH, 9, {})]
    with pytest.raises(HistoryError, match="not invoked"):
        check(stray)


def test_fetch_must_return_the_acknowledged_message() -> None:
    h = H()
    h.op(Op.FETCH, 0.0, 0.1, invoke={"mailbox": "A", "uid": 3, "expected": "a"}, reply={"found": ["a"]})
    h.op(Op.FETCH, 0.2, 0.3, EventType.UNKNOWN, invoke={"mailbox": "A", "uid": 3, "expected": "a"})
    assert h.check().valid
    h.op(Op.FETCH, 0.4, 0.5, invoke={"mailbox": "A", "uid": 3, "expected": "a"}, reply={"found": []})
    assert rules(h.check()) == ["fetch-mismatch"]


def test_stored_size_must_equal_sent_size_whatever_the_outcome() -> None:
    h = H()
    h.op(
        Op.APPEND,
        0.0,
        0.1,
        invoke={"chaos_id": "a", "mailbox": "INBOX", "bytes": 100},
        reply={"uid": 1, "uidvalidity": 7},
    )
    h.op(Op.APPEND, 0.0, 0.1, EventType.UNKNOWN, invoke={"chaos_id": "b", "mailbox": "INBOX", "bytes": 20_971_520})
    messages: list[JsonValue] = [{"uid": 1, "chaos_id": "a", "size": 100}, {"uid": 2, "chaos_id": "b", "size": 4096}]
    h.op(Op.FINAL_READ, 5.0, 5.1, reply={"mailbox": "INBOX", "uidvalidity": 7, "messages": messages})
    r = h.check()
    assert rules(r) == ["size-mismatch"]
    assert "b: sent 20971520 bytes, stored 4096" in r.violations[0].detail


def test_message_without_its_trailer_is_torn() -> None:
    h = H()
    h.op(Op.DELIVER, 0.0, 0.1, invoke={"chaos_id": "a", "mailbox": "INBOX"})
    h.op(Op.DELIVER, 0.0, 0.1, EventType.UNKNOWN, invoke={"chaos_id": "b", "mailbox": "INBOX"})
    messages: list[JsonValue] = [
        {"uid": 1, "chaos_id": "a", "size": 100, "intact": True},
        {"uid": 2, "chaos_id": "b", "size": 60, "intact": False},
    ]
    h.op(Op.FINAL_READ, 5.0, 5.1, reply={"mailbox": "INBOX", "uidvalidity": 7, "messages": messages})
    r = h.check()
    assert rules(r) == ["torn-write"]
    assert (r.unknown_present, r.writes_unknown) == (1, 1)
