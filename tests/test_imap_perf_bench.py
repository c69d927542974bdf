"""`mailha bench imap --spawn`: starts its own store + imapd, runs real sessions in
several client processes, checks every reply, reports CPU per session, cleans up."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.integration
def test_bench_imap_spawn_runs_full_sessions(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "imap.json"
    argv = [sys.executable, "-m", "mailha.cli", "bench", "imap", "--spawn", "--clients", "4", "--seconds", "2"]
    argv += ["--users", "2", "--procs", "2", "--idle", "1", "--json", "--output", str(out), "--sort-messages", "200"]
    # A short TMPDIR: the store's unix socket path must stay under 108 bytes.
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="mhb-", dir="/tmp"))
    try:
        env = {**os.environ, "TMPDIR": str(scratch)}
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
        left_behind = list(scratch.iterdir())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == json.loads(out.read_text())
    assert result["sessions"] > 0 and result["errors"] == 0 and result["failed_commands"] == {}
    commands = result["commands"]
    for name in ("LOGIN", "LIST", "SELECT", "FETCH_ENVELOPES", "FETCH_BODY", "STORE", "APPEND", "EXPUNGE", "LOGOUT"):
        assert commands[name]["count"] >= result["sessions"], name
    cpu = result["cpu_ms_per_session"]
    assert cpu["store"] > 0 and cpu["imapd"] > 0 and cpu["bench"] > 0
    assert result["sort_messages"] == 200  # the keys, in the same output (bench/sort_bench.py)
    for key in ("sort_10k_ms", "thread_10k_ms", "sort_10k_cold_ms", "thread_10k_cold_ms"):
        assert 0 < result[key] < 60_000, key
    # The throwaway stack is gone: no temp dir left behind.
    assert not left_behind
