"""bench/command_cost.py: a throwaway store + profiled imapd, calls and CPU per command."""

from __future__ import annotations

import pathlib

from bench.command_cost import measure


def test_command_cost_counts_calls_and_cpu_per_command(tmp_path: pathlib.Path) -> None:
    result = measure(20, ("NOOP", "FETCH_HEADERS", "APPEND_200B"), tmp_path)
    noop, fetch, append = result["NOOP"], result["FETCH_HEADERS"], result["APPEND_200B"]
    # A NOOP runs the read loop, the parser and the session: some dozens of calls, not thousands.
    assert 30 < noop["calls"] < 2000, noop
    # Five messages rendered cost more calls than a NOOP.
    assert fetch["calls"] > noop["calls"], result
    assert noop["cpu_us"] > 0 and fetch["cpu_us"] > 0, result
    # A NOOP never reaches the store; an append is a durable commit there.
    assert append["store_cpu_us"] > noop["store_cpu_us"] + 50, result
    assert (tmp_path / "command-cost-NOOP.pstats").stat().st_size > 0
