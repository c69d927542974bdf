"""The chaos report: per scenario figures as a terminal table and as JSON.

`--json` prints one object: {"scenarios": [...], "total": {...}}; the total
holds `lost`, `duplicated`, `violations` and `faults` summed over scenarios,
and `target_met` (0 lost, 0 duplicated, 0 violations, no scenario that could
not run, and at least `min_faults` injected faults).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from chaos.checker import CheckResult
from chaos.history import JsonValue

# Violations listed per scenario in the JSON (the full list is in the history).
MAX_LISTED_VIOLATIONS = 20


@dataclass(frozen=True)
class ScenarioReport:
    name: str
    result: CheckResult
    seconds: float
    history_path: str | None = None
    error: str | None = None  # the scenario could not run to the end (setup failed, ...)

    def to_json(self) -> dict[str, JsonValue]:
        r = self.result
        return {
            "name": self.name,
            "ok": self.error is None and r.valid,
            "error": self.error,
            "seconds": round(self.seconds, 1),
            "acknowledged": r.acknowledged,
            "failed": r.failed,
            "unknown": r.unknown,
            "writes": {
                "acknowledged": r.writes_acknowledged,
                "failed": r.writes_failed,
                "unknown": r.writes_unknown,
                "unknown_present": r.unknown_present,
                "unknown_absent": r.unknown_absent,
            },
            "lost": len(r.lost),
            "lost_ids": list(r.lost[:MAX_LISTED_VIOLATIONS]),
            "duplicated": len(r.duplicated),
            "duplicated_ids": list(r.duplicated[:MAX_LISTED_VIOLATIONS]),
            "violations": len(r.violations),
            "violation_list": [v.to_json() for v in r.violations[:MAX_LISTED_VIOLATIONS]],
            "faults": r.faults,
            "failovers": r.failovers,
            "max_unavailability_s": round(r.max_unavailability, 3),
            "final_read": r.final_read,
            "history": self.history_path,
        }


def totals(reports: Sequence[ScenarioReport], min_faults: int = 0) -> dict[str, JsonValue]:
    lost = sum(len(r.result.lost) for r in reports)
    duplicated = sum(len(r.result.duplicated) for r in reports)
    violations = sum(len(r.result.violations) for r in reports)
    faults = sum(r.result.faults for r in reports)
    errors = sum(1 for r in reports if r.error is not None)
    return {
        "scenarios": len(reports),
        "errors": errors,
        "acknowledged": sum(r.result.acknowledged for r in reports),
        "failed": sum(r.result.failed for r in reports),
        "unknown": sum(r.result.unknown for r in reports),
        "lost": lost,
        "duplicated": duplicated,
        "violations": violations,
        "faults": faults,
        "failovers": sum(r.result.failovers for r in reports),
        "max_unavailability_s": round(max((r.result.max_unavailability for r in reports), default=0.0), 3),
        "target_met": bool(reports)
        and lost == 0
        and duplicated == 0
        and violations == 0
        and errors == 0
        and faults >= min_faults,
        "min_faults": min_faults,
    }


def to_json(reports: Sequence[ScenarioReport], min_faults: int = 0) -> dict[str, JsonValue]:
    return {"scenarios": [r.to_json() for r in reports], "total": totals(reports, min_faults)}


def dumps(reports: Sequence[ScenarioReport], min_faults: int = 0) -> str:
    return json.dumps(to_json(reports, min_faults), indent=2)


_COLUMNS = ("scenario", "ok", "fail", "unknown", "lost", "dup", "viol", "faults", "failovers", "max unavail s", "")


def _row(r: ScenarioReport) -> tuple[str, ...]:
    c = r.result
    verdict = "ERROR" if r.error else ("ok" if c.valid else "INVALID")
    return (
        r.name,
        str(c.acknowledged),
        str(c.failed),
        str(c.unknown),
        str(len(c.lost)),
        str(len(c.duplicated)),
        str(len(c.violations)),
        str(c.faults),
        str(c.failovers),
        f"{c.max_unavailability:.2f}",
        verdict,
    )


def render_table(reports: Sequence[ScenarioReport], min_faults: int = 0) -> str:
    t = totals(reports, min_faults)
    rows = [_COLUMNS, *(_row(r) for r in reports)]
    rows.append(
        (
            "TOTAL",
            str(t["acknowledged"]),
            str(t["failed"]),
            str(t["unknown"]),
            str(t["lost"]),
            str(t["duplicated"]),
            str(t["violations"]),
            str(t["faults"]),
            str(t["failovers"]),
            f"{t['max_unavailability_s']:.2f}",
            "TARGET MET" if t["target_met"] else "TARGET NOT MET",
        )
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]

    def fmt(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0]), *(cell.rjust(w) for cell, w in zip(row[1:-1], widths[1:-1], strict=True))]
        return "  ".join([*cells, row[-1]]).rstrip()

    lines = [fmt(rows[0]), "  ".join("-" * w for w in widths[:-1])]
    lines += [fmt(row) for row in rows[1:-1]]
    lines += ["  ".join("-" * w for w in widths[:-1]), fmt(rows[-1])]
    for r in reports:
        if r.error:
            lines.append(f"{r.name}: could not run: {r.error}")
        for v in r.result.violations[:MAX_LISTED_VIOLATIONS]:
            lines.append(f"{r.name}: {v.rule}: {v.detail} (history events {list(v.events)})")
        if r.result.lost:
            lines.append(f"{r.name}: lost {', '.join(r.result.lost[:MAX_LISTED_VIOLATIONS])}")
        if r.result.duplicated:
            lines.append(f"{r.name}: duplicated {', '.join(r.result.duplicated[:MAX_LISTED_VIOLATIONS])}")
    return "\n".join(lines)
