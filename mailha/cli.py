"""The `mailha` command: a thin face over the packages that own the work.

Each command module exposes `register(subparsers)` and sets `func` on its
parsers; `func(args) -> int` is the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that add subcommands, in help order.
COMMAND_MODULES: tuple[str, ...] = (
    "bench.cli",
    "mailha.standalone_cli",
    "store.cli",
    "imapd.cli",
    "mailha.admin_cli",
    "lmtpd.cli",
    "mailha.import_cli",
    "backup.cli",
    "lab.cluster_cli",
    "haagent.agent_cli",
    "chaos.cli",
    "web.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailha", description="Fault-tolerant mail store with HA failover.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
