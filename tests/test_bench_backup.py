"""`mailha bench backup` end to end on a small store: every figure is there, and follow's RPO is measured."""

from __future__ import annotations

import json
import pathlib

import pytest

from bench import backup_bench
from bench.backup_bench import BackupBenchOptions, run_bench


def test_bench_backup_small_run(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup_bench, "RESULTS", tmp_path / "backup.json")
    assert run_bench(BackupBenchOptions(size_mib=16, work_dir=tmp_path)) == 0
    result = json.loads((tmp_path / "backup.json").read_text())
    assert result["messages"] > 0 and result["full_backup_mib"] > 0 and result["restore_mib_per_s"] > 0
    assert result["full_backup_mib_per_s"] > 0 and result["incremental_seconds"] >= 0
    # follow ran against a live writer: incrementals were made and held acknowledged appends.
    assert result["follow_incrementals"] >= 2 and result["follow_appends"] > 0
    assert 0 < result["follow_rpo_p50_s"] <= result["follow_rpo_max_s"]
    assert not list(tmp_path.glob("mailha-bench-backup-*"))  # its scratch directory is gone
