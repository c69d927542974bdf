"""`mailha chaos run [--scenario NAME|all|smoke] [--seconds S] [--json]`."""

from __future__ import annotations

import argparse
import pathlib
from typing import Any

DEFAULT_CONFIG = pathlib.Path("cluster.yaml")


def register(sub: Any) -> None:
    chaos: argparse.ArgumentParser = sub.add_parser(
        "chaos", help="fault injection against the demo cluster, with a history checker"
    )
    chaos_sub = chaos.add_subparsers(dest="chaos_command", metavar="ACTION", required=True)
    run = chaos_sub.add_parser("run", help="run scenarios and print the report")
    run.add_argument(
        "--config", type=pathlib.Path, default=DEFAULT_CONFIG, help="cluster.yaml (default ./cluster.yaml)"
    )
    run.add_argument("--scenario", default="all", help="a scenario name, 'all' or 'smoke' (see `mailha chaos list`)")
    run.add_argument("--seconds", type=float, default=90.0, help="upper bound on each scenario's fault phase")
    run.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    run.add_argument("--out", type=pathlib.Path, default=None, help="also write the JSON report to this file")
    run.add_argument(
        "--history-dir", type=pathlib.Path, default=pathlib.Path("bench-results/chaos-histories"), help="history files"
    )
    run.add_argument("--min-faults", type=int, default=0, help="fault count the target requires (make chaos: 100)")
    run.set_defaults(func=_run)
    lst = chaos_sub.add_parser("list", help="the scenarios")
    lst.set_defaults(func=_list)
    chk = chaos_sub.add_parser("check", help="check a history file again")
    chk.add_argument("history", type=pathlib.Path)
    chk.add_argument("--json", action="store_true")
    chk.set_defaults(func=_check)


def _run(args: argparse.Namespace) -> int:
    from chaos.suite import SuiteOptions, run_suite

    return run_suite(
        SuiteOptions(
            config=args.config,
            scenario=args.scenario,
            seconds=args.seconds,
            json=args.json,
            out=args.out,
            history_dir=args.history_dir,
            min_faults=args.min_faults,
        )
    )


def _list(args: argparse.Namespace) -> int:
    from chaos.suite import list_scenarios

    return list_scenarios()


def _check(args: argparse.Namespace) -> int:
    from chaos.suite import check_file

    return check_file(args.history, args.json)
