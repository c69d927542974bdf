"""Storage full on a small tmpfs: refused deliveries, nothing lost or torn, service back after."""

from __future__ import annotations

import os
import pathlib
import threading

import pytest

from chaos.history import Event, EventType, Op
from chaos.storage_full import run_storage_full, temporary_refusals_only

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.chaos]


def test_permanent_refusals_are_violations_temporary_ones_are_not() -> None:
    def delivery(op_id: int, error: str) -> list[Event]:
        return [
            Event(2 * op_id, 0.0, 0.0, "c", EventType.INVOKE, Op.DELIVER, op_id, {"chaos_id": f"x{op_id}"}),
            Event(2 * op_id + 1, 0.1, 0.1, "c", EventType.FAIL, Op.DELIVER, op_id, {"error": error}),
        ]

    assert temporary_refusals_only(delivery(0, "DATA 452") + delivery(1, "before DATA: OSError")) == []
    found = temporary_refusals_only(delivery(0, "DATA 554") + delivery(1, "DATA 452"))
    assert [v.rule for v in found] == ["permanent-refusal"]


@pytest.mark.slow
def test_storage_full_scenario(tmp_path: pathlib.Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (mount tmpfs)")
    report = run_storage_full(25.0, tmp_path, threading.Event())
    r = report.result
    assert report.error is None, report.error
    assert r.faults >= 2
    assert r.final_read
    assert r.writes_acknowledged > 0
    assert r.writes_failed > 0  # the full disk really refused deliveries
    assert not r.lost and not r.duplicated
    # A full disk is temporary: lmtpd answers 452 4.3.1 so the MTA retries, never a bounce.
    assert not r.violations, r.violations
