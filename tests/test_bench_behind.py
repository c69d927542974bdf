"""`mailha bench behind` end to end on a small size (mailha only; the overflow itself is
covered by test_imap_watch_fell_behind with a lowered buffer)."""

from __future__ import annotations

import pytest

from bench.behind_bench import run


def test_bench_behind_small_run() -> None:
    result = run(60, 2)
    assert result["messages"] == [60, 120]  # each run adds its messages to the same INBOX
    assert result["same_as_fresh"] is True and result["noop_ms_median"] > 0
    assert "dovecot_noop_ms_median" not in result and result["loadavg"]


def test_bench_behind_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        run(0, 1)
