"""`mailha bench compare`, tiny: both servers answer every workload, the JSON has the ratios."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

from bench import dovecot

ROOT = pathlib.Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(dovecot.available() is not None, reason=str(dovecot.available()))

_SINGLE = (
    "noop",
    "select",
    "fetch_headers",
    "fetch_body",
    "store",
    "store_change",
    "append_200b",
    "append_4kb",
    "append_1mb",
    "fetch_body_1mb",
    "search",
)


@pytest.mark.integration
def test_bench_compare_measures_both_servers_and_writes_ratios(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "compare.json"
    argv = [sys.executable, "-m", "mailha.cli", "bench", "compare", "--users", "3", "--clients", "3"]
    argv += ["--seconds", "2", "--rounds", "1", "--think-clients", "6", "--think-ms", "100", "--samples", "3"]
    argv += ["--json", "--output", str(out)]
    # A short TMPDIR: the store's unix socket path must stay under 108 bytes.
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="mhc-", dir="/tmp"))
    scratch.chmod(0o755)  # Dovecot's unprivileged auth and mail processes read below it
    try:
        env = {**os.environ, "TMPDIR": str(scratch)}
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False)
        left_behind = list(scratch.iterdir())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == json.loads(out.read_text())
    for server in ("dovecot", "mailha"):
        row = result["summary"][server]
        assert row["sessions_per_s"] > 0, server
        assert row["mixed_errors"] == 0 and row["think_errors"] == 0 and row["failed_commands"] == 0, server
        assert row["server_cpu_ms_per_session"] > 0 and row["client_cpu_ms_per_session"] > 0, server
        assert row["think_p99_ms"] > 0, server
        for cmd in _SINGLE:
            assert 0 < row[f"{cmd}_p50_ms"] <= row[f"{cmd}_p99_ms"], (server, cmd)
        mixed = result["mixed"][server]["commands"]
        by_command = result["mixed_by_command"][server]
        for name in ("LOGIN", "LIST", "STATUS", "SELECT", "FETCH_BODY", "STORE", "APPEND", "EXPUNGE", "LOGOUT"):
            assert mixed[name]["count"] > 0, (server, name)
            assert 0 < by_command[name]["p50_ms"] <= by_command[name]["p99_ms"], (server, name)
    assert len(result["think"]["mailha"]["rounds_p99_ms"]) == 1  # --rounds 1
    faults = result["think"]["mailha"]["rounds_major_faults"]
    assert len(faults) == 1 and {"store", "imapd"} <= set(faults[0]) and min(faults[0].values()) >= 0
    assert len(result["think"]["dovecot"]["rounds_loadavg"]) == 1
    split = result["server_cpu_ms_per_session_by_process"]
    assert {"store", "imapd"} <= set(split["mailha"]) and split["mailha"]["store"] > 0
    assert sum(split["mailha"].values()) == pytest.approx(result["summary"]["mailha"]["server_cpu_ms_per_session"], 0.1)
    assert "imap" in split["dovecot"] or "exited" in split["dovecot"], split["dovecot"]
    for key in ["sessions_per_s_ratio", "server_cpu_ms_per_session_ratio", "think_p99_ratio"]:
        assert result[key] > 0, key
    for cmd in _SINGLE:
        assert result[f"{cmd}_p50_ratio"] > 0 and result[f"{cmd}_p99_ratio"] > 0, cmd
    assert not left_behind
