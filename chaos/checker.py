"""The history checker: pure functions from a history to a verdict.

In the style of Jepsen's set-full checker. No I/O, no clock: the same
history always gives the same result, so every rule is unit-tested on
synthetic histories.

Rules (each broken rule is a Violation naming the history events involved):

- set: every acknowledged APPEND/delivery is present exactly once in the
  final read (else `lost` / `duplicated`); nothing is present that was never
  attempted (`unexpected`); a definitely failed write is absent
  (`failed-present`); a scratch message whose expunge was acknowledged is
  absent (`expunged-present`); a message is found in the mailbox it was
  written to (`wrong-mailbox`) and under the UID its APPENDUID named
  (`uid-changed`); a present message, whatever its outcome, has the size
  that was sent (`size-mismatch`, appends) and, when the final read checked
  bodies, ends with its trailer line (`torn-write`). Writes with unknown
  outcome may be present or not; they are counted, never judged.
- uidvalidity: one UIDVALIDITY per mailbox across every observation.
- uid: within a mailbox no UID is acknowledged for two messages, and if
  APPEND a was acknowledged before APPEND b was invoked, uid(a) < uid(b)
  (real-time order; concurrent appends may commit in either order).
- monotonic: UIDNEXT and HIGHESTMODSEQ never decrease, and the store's
  writer epoch never goes backwards, between observations ordered in real
  time (one completed before the other was invoked). An acknowledged
  APPEND with UID u is an observation that UIDNEXT > u.
- agents: two nodes are never active at the same time (from role samples,
  assuming a node stays active between two samples of the same epoch, and
  from the agents' own interval history), and no epoch is claimed by two
  nodes.
- fetch: a FETCH of an acknowledged message by its UID returns that message.
- vip: the floating IP is never held by two nodes (the sampler reports
  only nodes seen holding it in two passes taken in opposite orders, so a
  clean handover between the passes is not mistaken for a double holder).
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chaos.history import CLIENT_OPS, WRITES, Event, EventType, HistoryError, JsonValue, Op, Operation, pair


@dataclass(frozen=True)
class Violation:
    rule: str
    detail: str
    events: tuple[int, ...] = ()  # history indices: the excerpt that shows it

    def to_json(self) -> dict[str, JsonValue]:
        return {"rule": self.rule, "detail": self.detail, "events": list(self.events)}


@dataclass(frozen=True)
class CheckResult:
    acknowledged: int = 0  # client operations answered ok (all kinds)
    failed: int = 0
    unknown: int = 0
    writes_acknowledged: int = 0  # APPEND/deliveries of tagged messages answered ok
    writes_failed: int = 0
    writes_unknown: int = 0
    unknown_present: int = 0  # unknown-outcome writes found after healing
    unknown_absent: int = 0
    lost: tuple[str, ...] = ()
    duplicated: tuple[str, ...] = ()
    violations: tuple[Violation, ...] = ()  # every rule other than lost/duplicated
    faults: int = 0
    failovers: int = 0
    max_unavailability: float = 0.0  # seconds without any acknowledged client operation
    final_read: bool = False

    @property
    def valid(self) -> bool:
        return not self.lost and not self.duplicated and not self.violations


# ---------------------------------------------------------------------------
# The set rules


@dataclass(frozen=True)
class _Found:
    mailbox: str
    uid: int
    uidvalidity: int | None
    event: int
    size: int | None = None


def _final_reads(ops: Sequence[Operation]) -> list[Event]:
    return [op.event() for op in ops if op.f is Op.FINAL_READ and op.outcome is EventType.OK]


def _found_messages(final: Sequence[Event]) -> tuple[dict[str, list[_Found]], list[Violation]]:
    found: dict[str, list[_Found]] = defaultdict(list)
    problems: list[Violation] = []
    for ev in final:
        mailbox = ev.str_("mailbox") or "?"
        uidvalidity = ev.int_("uidvalidity")
        for raw in ev.list_("messages"):
            if not isinstance(raw, dict):
                raise HistoryError(f"event {ev.index}: messages must hold objects")
            uid, chaos_id, size = raw.get("uid"), raw.get("chaos_id"), raw.get("size")
            if raw.get("intact") is False:
                problems.append(
                    Violation("torn-write", f"{mailbox} UID {uid} ({chaos_id}) lacks its trailer line", (ev.index,))
                )
            if not isinstance(uid, int):
                raise HistoryError(f"event {ev.index}: message without an integer uid")
            if not isinstance(chaos_id, str) or not chaos_id:
                problems.append(
                    Violation("unexpected", f"{mailbox} UID {uid} has no X-Chaos-Id (never attempted)", (ev.index,))
                )
                continue
            found[chaos_id].append(_Found(mailbox, uid, uidvalidity, ev.index, size if isinstance(size, int) else None))
    return found, problems


def _check_set(
    ops: Sequence[Operation], final: Sequence[Event]
) -> tuple[list[str], list[str], list[Violation], int, int]:
    """Returns lost ids, duplicated ids, other violations, unknown present, unknown absent."""
    writes: dict[str, Operation] = {}
    for op in ops:
        if op.f in WRITES:
            chaos_id = op.invoke.str_("chaos_id")
            if chaos_id is None:
                raise HistoryError(f"event {op.invoke.index}: {op.f.value} without chaos_id")
            if chaos_id in writes:
                raise HistoryError(f"event {op.invoke.index}: chaos_id {chaos_id} written twice by the workload")
            writes[chaos_id] = op
    if not final:
        return [], [], [], 0, 0  # check() reports the missing final read once
    found, violations = _found_messages(final)
    read_mailboxes = {ev.str_("mailbox") for ev in final}
    expunge_invoked: set[str] = set()
    expunge_acked: dict[str, int] = {}
    for op in ops:
        if op.f is Op.EXPUNGE:
            for raw in op.invoke.list_("chaos_ids"):
                if isinstance(raw, str):
                    expunge_invoked.add(raw)
                    if op.outcome is EventType.OK and op.complete is not None:
                        expunge_acked[raw] = op.complete.index

    lost: list[str] = []
    duplicated: list[str] = []
    unknown_present = unknown_absent = 0
    for chaos_id, op in writes.items():
        ev = op.event()
        mailbox = op.invoke.str_("mailbox") or "INBOX"
        where = found.get(chaos_id, [])
        scratch = op.invoke.bool_("scratch")
        if op.outcome is EventType.OK:
            if not where:
                if mailbox not in read_mailboxes:
                    violations.append(
                        Violation("unchecked", f"{chaos_id}: acknowledged in {mailbox}, never read back", (ev.index,))
                    )
                elif not (scratch and chaos_id in expunge_invoked):
                    lost.append(chaos_id)
            elif scratch and chaos_id in expunge_acked:
                violations.append(
                    Violation(
                        "expunged-present",
                        f"{chaos_id}: expunge acknowledged but still present",
                        (expunge_acked[chaos_id], where[0].event),
                    )
                )
            uid, uidvalidity = ev.int_("uid"), ev.int_("uidvalidity")
        sent = op.invoke.int_("bytes")
        for f in where:
            if sent is not None and f.size is not None and f.size != sent:
                violations.append(
                    Violation(
                        "size-mismatch",
                        f"{chaos_id}: sent {sent} bytes, stored {f.size} (torn or altered write)",
                        (op.invoke.index, f.event),
                    )
                )
        if op.outcome is EventType.OK:
            for f in where:
                if f.mailbox != mailbox:
                    violations.append(
                        Violation(
                            "wrong-mailbox",
                            f"{chaos_id}: written to {mailbox}, found in {f.mailbox}",
                            (ev.index, f.event),
                        )
                    )
                elif uid is not None and f.uid != uid and uidvalidity == f.uidvalidity:
                    violations.append(
                        Violation(
                            "uid-changed",
                            f"{chaos_id}: acknowledged as UID {uid}, found as UID {f.uid}",
                            (ev.index, f.event),
                        )
                    )
        elif op.outcome is EventType.FAIL:
            if where:
                violations.append(
                    Violation(
                        "failed-present",
                        f"{chaos_id}: {op.f.value} was refused ({ev.str_('error') or 'NO'}) but the message is present",
                        (ev.index, where[0].event),
                    )
                )
        elif scratch:
            pass  # scratch messages are not counted among the checked writes
        elif where:
            unknown_present += 1
        else:
            unknown_absent += 1
        if len(where) > 1:
            duplicated.append(chaos_id)
    for chaos_id, where in found.items():
        if chaos_id not in writes:
            violations.append(
                Violation(
                    "unexpected",
                    f"{chaos_id}: found in {where[0].mailbox} UID {where[0].uid} but never attempted",
                    (where[0].event,),
                )
            )
    return sorted(lost), sorted(duplicated), violations, unknown_present, unknown_absent


# ---------------------------------------------------------------------------
# UIDVALIDITY and UID rules


def _check_uidvalidity(ops: Sequence[Operation]) -> list[Violation]:
    seen: dict[str, tuple[int, int]] = {}
    violations: list[Violation] = []
    for op in ops:
        if op.outcome is not EventType.OK or op.f not in (Op.APPEND, Op.STATUS, Op.FINAL_READ):
            continue
        ev = op.event()
        mailbox, uidvalidity = ev.str_("mailbox"), ev.int_("uidvalidity")
        if mailbox is None or uidvalidity is None:
            continue
        first = seen.setdefault(mailbox, (uidvalidity, ev.index))
        if first[0] != uidvalidity:
            violations.append(
                Violation(
                    "uidvalidity",
                    f"{mailbox}: UIDVALIDITY {first[0]} then {uidvalidity}",
                    (first[1], ev.index),
                )
            )
            seen[mailbox] = (uidvalidity, ev.index)  # report each change once
    return violations


def _acked_appends(ops: Sequence[Operation]) -> dict[str, list[Operation]]:
    by_mailbox: dict[str, list[Operation]] = defaultdict(list)
    for op in ops:
        if op.f is Op.APPEND and op.outcome is EventType.OK and op.event().int_("uid") is not None:
            by_mailbox[op.invoke.str_("mailbox") or "INBOX"].append(op)
    return by_mailbox


def _check_uids(ops: Sequence[Operation]) -> list[Violation]:
    violations: list[Violation] = []
    for mailbox, appends in _acked_appends(ops).items():
        owner: dict[tuple[int | None, int], Operation] = {}
        for op in appends:
            ev = op.event()
            key = (ev.int_("uidvalidity"), ev.int_("uid") or 0)
            other = owner.setdefault(key, op)
            if other is not op:
                violations.append(
                    Violation(
                        "uid-reused",
                        f"{mailbox}: UID {key[1]} acknowledged for {other.invoke.str_('chaos_id')} "
                        f"and {op.invoke.str_('chaos_id')}",
                        (other.event().index, ev.index),
                    )
                )
        # Real-time order: the largest UID acknowledged before b was invoked must be below uid(b).
        by_end = sorted(appends, key=lambda o: o.end)
        ends = [o.end for o in by_end]
        prefix_max: list[tuple[int, Operation]] = []
        best: tuple[int, Operation] | None = None
        for o in by_end:
            uid = o.event().int_("uid") or 0
            if best is None or uid > best[0]:
                best = (uid, o)
            prefix_max.append(best)
        for op in appends:
            k = bisect.bisect_left(ends, op.start)
            if k == 0:
                continue
            prev_uid, prev = prefix_max[k - 1]
            uid = op.event().int_("uid") or 0
            if uid <= prev_uid and prev is not op:
                violations.append(
                    Violation(
                        "uid-order",
                        f"{mailbox}: {op.invoke.str_('chaos_id')} got UID {uid} although UID {prev_uid} "
                        f"({prev.invoke.str_('chaos_id')}) was acknowledged before it was invoked",
                        (prev.event().index, op.invoke.index, op.event().index),
                    )
                )
    return violations


# ---------------------------------------------------------------------------
# Monotonic observations


@dataclass(frozen=True)
class _Obs:
    start: float
    end: float
    value: int
    event: int
    strict_lower: bool = False  # value is a bound: later observations must be > value - 1


def _check_monotonic(rule: str, what: str, groups: dict[str, list[_Obs]]) -> list[Violation]:
    """Within each group, an observation invoked after another completed must not be smaller."""
    violations: list[Violation] = []
    for key, observations in groups.items():
        by_end = sorted(observations, key=lambda o: o.end)
        ends = [o.end for o in by_end]
        prefix: list[_Obs] = []
        best: _Obs | None = None
        for o in by_end:
            if best is None or o.value > best.value:
                best = o
            prefix.append(best)
        for o in observations:
            if o.strict_lower:
                continue  # bounds constrain samples; they are not samples themselves
            k = bisect.bisect_left(ends, o.start)
            if k == 0:
                continue
            prev = prefix[k - 1]
            if o.value < prev.value:
                violations.append(
                    Violation(
                        rule,
                        f"{key}: {what} went from {prev.value} back to {o.value}",
                        (prev.event, o.event),
                    )
                )
    return violations


def _check_status(ops: Sequence[Operation]) -> list[Violation]:
    uidnext: dict[str, list[_Obs]] = defaultdict(list)
    modseq: dict[str, list[_Obs]] = defaultdict(list)
    for op in ops:
        if op.outcome is not EventType.OK:
            continue
        ev = op.event()
        mailbox = ev.str_("mailbox")
        if mailbox is None:
            continue
        key = f"{mailbox} (UIDVALIDITY {ev.int_('uidvalidity')})"
        if op.f in (Op.STATUS, Op.FINAL_READ):
            if (n := ev.int_("uidnext")) is not None:
                uidnext[key].append(_Obs(op.start, op.end, n, ev.index))
            if (m := ev.int_("highestmodseq")) is not None:
                modseq[key].append(_Obs(op.start, op.end, m, ev.index))
        elif op.f is Op.APPEND and (uid := ev.int_("uid")) is not None:
            uidnext[key].append(_Obs(op.start, op.end, uid + 1, ev.index, strict_lower=True))
    return _check_monotonic("uidnext", "UIDNEXT", uidnext) + _check_monotonic("highestmodseq", "HIGHESTMODSEQ", modseq)


def _check_epochs(ops: Sequence[Operation]) -> list[Violation]:
    obs = [
        _Obs(op.start, op.end, epoch, op.event().index)
        for op in ops
        if op.f is Op.EPOCH and op.outcome is EventType.OK and (epoch := op.event().int_("epoch")) is not None
    ]
    return _check_monotonic("epoch", "the store's writer epoch", {"store": obs})


# ---------------------------------------------------------------------------
# Agents and the floating IP


@dataclass(frozen=True)
class _Interval:
    node: str
    epoch: int | None
    start: float
    end: float
    events: tuple[int, ...]


def _overlaps(intervals: Sequence[_Interval], rule: str, clock: str) -> list[Violation]:
    violations: list[Violation] = []
    ordered = sorted(intervals, key=lambda i: i.start)
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            if b.start >= a.end:
                break
            if a.node != b.node:
                violations.append(
                    Violation(
                        rule,
                        f"{a.node} (epoch {a.epoch}) and {b.node} (epoch {b.epoch}) both active "
                        f"from {b.start:.3f} to {min(a.end, b.end):.3f} ({clock})",
                        (*a.events, *b.events),
                    )
                )
    return violations


def _check_agents(ops: Sequence[Operation]) -> list[Violation]:
    violations: list[Violation] = []
    active: dict[tuple[str, int | None], list[Operation]] = defaultdict(list)
    for op in ops:
        if op.f is Op.AGENT and op.outcome is EventType.OK and op.event().str_("role") == "active":
            ev = op.event()
            active[(ev.str_("node") or "?", ev.int_("epoch"))].append(op)
    claimed: dict[int, tuple[str, int]] = {}
    sampled: list[_Interval] = []
    for (node, epoch), samples in active.items():
        first_end = min(o.end for o in samples)
        last_start = max(o.start for o in samples)
        events = (min(samples, key=lambda o: o.end).event().index, max(samples, key=lambda o: o.start).event().index)
        if first_end < last_start:
            sampled.append(_Interval(node, epoch, first_end, last_start, events))
        if epoch is not None:
            other = claimed.setdefault(epoch, (node, samples[0].event().index))
            if other[0] != node:
                violations.append(
                    Violation("agent-epoch", f"epoch {epoch} claimed by {other[0]} and {node}", (other[1], events[0]))
                )
    violations += _overlaps(sampled, "agent-overlap", "sampled")

    recorded: list[_Interval] = []
    for op in ops:
        if op.f is not Op.AGENT_HISTORY or op.outcome is not EventType.OK:
            continue
        ev = op.event()
        for raw in ev.list_("intervals"):
            if not isinstance(raw, dict):
                raise HistoryError(f"event {ev.index}: intervals must hold objects")
            who, raw_epoch, start, end = raw.get("node"), raw.get("epoch"), raw.get("start"), raw.get("end")
            if not isinstance(who, str) or not isinstance(start, (int, float)):
                raise HistoryError(f"event {ev.index}: interval needs node and start")
            stop = float(end) if isinstance(end, (int, float)) else ev.wall  # still open when read
            recorded.append(
                _Interval(who, raw_epoch if isinstance(raw_epoch, int) else None, float(start), stop, (ev.index,))
            )
    violations += _overlaps(recorded, "agent-overlap", "agent history, wall clock")
    return violations


def _check_fetches(ops: Sequence[Operation]) -> list[Violation]:
    """A FETCH of an acknowledged, never-expunged message must return it under its UID."""
    violations: list[Violation] = []
    for op in ops:
        if op.f is Op.FETCH and op.outcome is EventType.OK:
            ev = op.event()
            expected = ev.str_("expected")
            if expected is not None and expected not in ev.list_("found"):
                violations.append(
                    Violation(
                        "fetch-mismatch",
                        f"{ev.str_('mailbox')} UID {ev.int_('uid')}: expected {expected}, got {ev.list_('found')}",
                        (ev.index,),
                    )
                )
    return violations


def _check_vip(ops: Sequence[Operation]) -> list[Violation]:
    violations: list[Violation] = []
    for op in ops:
        if op.f is Op.VIP and op.outcome is EventType.OK:
            ev = op.event()
            holders = [h for h in ev.list_("holders") if isinstance(h, str)]
            if len(holders) > 1:
                violations.append(
                    Violation("vip-double", f"floating IP held by {', '.join(sorted(holders))}", (ev.index,))
                )
    return violations


# ---------------------------------------------------------------------------
# Figures


def _failovers(ops: Sequence[Operation]) -> int:
    """Changes of writer: rises of the store epoch, else changes of the active node."""
    epochs = sorted(
        (op.end, epoch)
        for op in ops
        if op.f is Op.EPOCH and op.outcome is EventType.OK and (epoch := op.event().int_("epoch")) is not None
    )
    if epochs:
        return len({e for _, e in epochs}) - 1
    changes, last = 0, None
    for op in sorted(ops, key=lambda o: o.end):
        if op.f is Op.AGENT and op.outcome is EventType.OK and op.event().str_("role") == "active":
            node = op.event().str_("node")
            if last is not None and node != last:
                changes += 1
            last = node
    return changes


def _max_unavailability(ops: Sequence[Operation]) -> float:
    """Longest stretch, while clients were working, with no acknowledged client operation."""
    client = [op for op in ops if op.f in CLIENT_OPS]
    if not client:
        return 0.0
    begin = min(op.start for op in client)
    finish = (
        max(op.complete.time for op in client if op.complete is not None)
        if any(op.complete is not None for op in client)
        else begin
    )
    oks = sorted(op.end for op in client if op.outcome is EventType.OK)
    points = [begin, *oks, finish]
    return max((b - a for a, b in itertools.pairwise(points)), default=0.0)


def check(events: Iterable[Event]) -> CheckResult:
    ops = pair(events)
    final = _final_reads(ops)
    lost, duplicated, violations, unknown_present, unknown_absent = _check_set(ops, final)
    violations += _check_uidvalidity(ops)
    violations += _check_uids(ops)
    violations += _check_status(ops)
    violations += _check_epochs(ops)
    violations += _check_agents(ops)
    violations += _check_vip(ops)
    violations += _check_fetches(ops)
    outcomes = Counter(op.outcome for op in ops if op.f in CLIENT_OPS)
    write_outcomes = Counter(op.outcome for op in ops if op.f in WRITES and not op.invoke.bool_("scratch"))
    faults = sum(
        1 for op in ops if op.f is Op.NEMESIS and op.invoke.str_("phase") == "inject" and op.outcome is EventType.OK
    )
    if not final and any(op.f in WRITES for op in ops):
        violations.append(Violation("unchecked", "no final read: nothing could be verified"))
    return CheckResult(
        acknowledged=outcomes[EventType.OK],
        failed=outcomes[EventType.FAIL],
        unknown=outcomes[EventType.UNKNOWN],
        writes_acknowledged=write_outcomes[EventType.OK],
        writes_failed=write_outcomes[EventType.FAIL],
        writes_unknown=write_outcomes[EventType.UNKNOWN],
        unknown_present=unknown_present,
        unknown_absent=unknown_absent,
        lost=tuple(lost),
        duplicated=tuple(duplicated),
        violations=tuple(violations),
        faults=faults,
        failovers=_failovers(ops),
        max_unavailability=_max_unavailability(ops),
        final_read=bool(final),
    )
