"""The suite: picks scenarios, runs them one after the other, prints and writes the report.

Ctrl-C stops the current fault (every fault heals in its `finally`), heals
everything, checks what was recorded so far and still prints the report.
"""

from __future__ import annotations

import json
import pathlib
import signal
import sys
import threading
from dataclasses import dataclass
from types import FrameType

from chaos.checker import check
from chaos.history import HistoryError, read_history
from chaos.report import ScenarioReport, dumps, render_table
from chaos.runner import RunOptions, run_scenario
from chaos.scenarios import SCENARIOS, SMOKE, Scenario
from chaos.storage_full import run_storage_full
from nodeconf.config import ConfigError, load


@dataclass(frozen=True)
class SuiteOptions:
    config: pathlib.Path
    scenario: str
    seconds: float
    json: bool
    out: pathlib.Path | None
    history_dir: pathlib.Path
    min_faults: int = 0


def select(name: str) -> list[Scenario]:
    if name == "all":
        return list(SCENARIOS.values())
    if name == "smoke":
        return [SCENARIOS[n] for n in SMOKE]
    names = [n.strip() for n in name.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise KeyError(f"unknown scenario {unknown[0]!r}; have: {', '.join(SCENARIOS)}")
    return [SCENARIOS[n] for n in names]


def run_suite(options: SuiteOptions) -> int:
    try:
        cfg = load(options.config)
        scenarios = select(options.scenario)
    except (ConfigError, KeyError) as exc:
        print(f"mailha chaos: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()  # the current fault heals itself; no new one starts

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    reports: list[ScenarioReport] = []
    try:
        for scenario in scenarios:
            if stop.is_set():
                break
            if not options.json:
                print(f"chaos: {scenario.name}: {scenario.description} ...", flush=True)
            if scenario.standalone:
                report = run_storage_full(options.seconds, options.history_dir, stop)
            else:
                report = run_scenario(cfg, scenario, RunOptions(options.seconds, options.history_dir), stop)
            reports.append(report)
            if not options.json:
                r = report.result
                print(
                    f"chaos: {scenario.name}: {r.faults} faults, {r.acknowledged} ok, {len(r.lost)} lost, "
                    f"{len(r.duplicated)} duplicated, {len(r.violations)} violations"
                    + (f", error: {report.error}" if report.error else ""),
                    flush=True,
                )
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    text = dumps(reports, options.min_faults)
    if options.out is not None:
        options.out.parent.mkdir(parents=True, exist_ok=True)
        options.out.write_text(text + "\n")
    print(text if options.json else render_table(reports, options.min_faults))
    total = json.loads(text)["total"]
    return 0 if total["target_met"] else 1


def list_scenarios() -> int:
    width = max(len(n) for n in SCENARIOS)
    for name, s in SCENARIOS.items():
        mark = " (smoke)" if name in SMOKE else ""
        print(f"{name.ljust(width)}  {s.description}, up to {s.rounds} times{mark}")
    return 0


def check_file(path: pathlib.Path, as_json: bool) -> int:
    try:
        result = check(read_history(path))
    except (OSError, HistoryError) as exc:
        print(f"mailha chaos: {exc}", file=sys.stderr)
        return 2
    report = ScenarioReport(path.stem, result, 0.0, str(path))
    print(dumps([report]) if as_json else render_table([report]))
    return 0 if result.valid else 1
