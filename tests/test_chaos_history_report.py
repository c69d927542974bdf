"""History file round trip and the report's table and JSON."""

from __future__ import annotations

import json
import pathlib
import threading

import pytest

from chaos.checker import CheckResult, Violation
from chaos.history import EventType, HistoryError, HistoryWriter, Op, pair, parse_lines, read_history
from chaos.report import ScenarioReport, dumps, render_table, to_json


def test_writer_round_trips_through_the_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "h.jsonl"
    w = HistoryWriter(path)
    op = w.invoke("imap-1", Op.APPEND, {"chaos_id": "c1", "mailbox": "INBOX"})
    w.complete("imap-1", Op.APPEND, op, EventType.OK, {"uid": 3, "uidvalidity": 9})
    w.record("nemesis", Op.NEMESIS, {"fault": "kill", "phase": "inject"})
    w.close()
    events = read_history(path)
    assert events == w.events()
    assert [e.type for e in events] == [EventType.INVOKE, EventType.OK, EventType.INVOKE, EventType.OK]
    assert [e.index for e in events] == [0, 1, 2, 3]
    ops = pair(events)
    assert ops[0].value == {"chaos_id": "c1", "mailbox": "INBOX", "uid": 3, "uidvalidity": 9}
    assert ops[0].end >= ops[0].start


def test_writer_is_safe_across_threads(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "h.jsonl"
    w = HistoryWriter(path)

    def worker(n: int) -> None:
        for i in range(200):
            op = w.invoke(f"p{n}", Op.FETCH, {"i": i})
            w.complete(f"p{n}", Op.FETCH, op, EventType.OK)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    events = read_history(path)
    assert len(events) == 1600
    assert [e.index for e in events] == list(range(1600))
    assert all(op.complete is not None for op in pair(events))


def test_completion_must_be_a_completion() -> None:
    w = HistoryWriter()
    op = w.invoke("p", Op.FETCH)
    with pytest.raises(HistoryError):
        w.complete("p", Op.FETCH, op, EventType.INVOKE)


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        '{"i": 0}',
        '{"i": 0, "t": 0, "process": "p", "type": "weird", "f": "append", "op_id": 0}',
        '{"i": 0, "t": 0, "process": "p", "type": "ok", "f": "append", "op_id": "x"}',
        '{"i": 0, "t": 0, "process": "p", "type": "ok", "f": "append", "op_id": 0, "value": []}',
    ],
)
def test_malformed_lines_are_rejected(line: str) -> None:
    with pytest.raises(HistoryError):
        list(parse_lines([line]))


def test_mismatched_completion_is_rejected() -> None:
    lines = [
        '{"i": 0, "t": 0, "process": "p", "type": "invoke", "f": "append", "op_id": 0}',
        '{"i": 1, "t": 1, "process": "q", "type": "ok", "f": "append", "op_id": 0}',
    ]
    with pytest.raises(HistoryError, match="does not match"):
        pair(parse_lines(lines))


def _reports() -> list[ScenarioReport]:
    clean = CheckResult(acknowledged=120, failed=3, unknown=2, faults=10, failovers=4, max_unavailability=3.25)
    broken = CheckResult(
        acknowledged=50,
        lost=("c-1-4",),
        duplicated=("c-2-9", "c-2-10"),
        violations=(Violation("uid-order", "INBOX: c got UID 4", (7, 9)),),
        faults=5,
        max_unavailability=7.5,
    )
    return [
        ScenarioReport("kill-active", clean, 60.0),
        ScenarioReport("zk-quorum-loss", broken, 61.0),
        ScenarioReport("storage-full", CheckResult(), 1.0, error="needs root"),
    ]


def test_json_report_has_scenarios_and_totals() -> None:
    obj = to_json(_reports(), min_faults=100)
    assert json.loads(dumps(_reports(), min_faults=100)) == obj
    scenarios = obj["scenarios"]
    assert isinstance(scenarios, list) and len(scenarios) == 3
    first = scenarios[0]
    assert isinstance(first, dict)
    assert first["ok"] is True and first["faults"] == 10 and first["max_unavailability_s"] == 3.25
    total = obj["total"]
    assert isinstance(total, dict)
    assert total["lost"] == 1 and total["duplicated"] == 2 and total["violations"] == 1
    assert total["faults"] == 15 and total["errors"] == 1
    assert total["max_unavailability_s"] == 7.5
    assert total["target_met"] is False


def test_target_needs_enough_faults_and_no_errors() -> None:
    clean = [ScenarioReport("a", CheckResult(faults=60), 1.0), ScenarioReport("b", CheckResult(faults=40), 1.0)]
    total = to_json(clean, min_faults=100)["total"]
    assert isinstance(total, dict) and total["target_met"] is True
    total = to_json(clean, min_faults=101)["total"]
    assert isinstance(total, dict) and total["target_met"] is False


def test_table_shows_every_scenario_and_the_breaks() -> None:
    table = render_table(_reports(), min_faults=100)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["scenario", "ok", "fail"]
    row = next(line for line in lines if line.startswith("zk-quorum-loss"))
    assert row.split()[-1] == "INVALID"
    assert next(line for line in lines if line.startswith("kill-active")).split()[-1] == "ok"
    assert next(line for line in lines if line.startswith("storage-full")).split()[-1] == "ERROR"
    total = next(line for line in lines if line.startswith("TOTAL"))
    assert total.endswith("TARGET NOT MET")
    assert "zk-quorum-loss: uid-order: INBOX: c got UID 4 (history events [7, 9])" in lines
    assert "zk-quorum-loss: lost c-1-4" in lines
    assert "storage-full: could not run: needs root" in lines
