"""`mailha bench compare --mailbox-size N`, tiny: both servers filled alike, the same SEARCH answers, ratios."""

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


@pytest.mark.integration
def test_compare_mailbox_fills_both_and_reports_ratios(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "cmp.json"
    argv = [sys.executable, "-m", "mailha.cli", "bench", "compare", "--mailbox-size", "250"]
    argv += ["--mailbox-rounds", "2", "--mailbox-runs", "1", "--json", "--output", str(out)]
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="mhm-", dir="/tmp"))  # short: unix socket paths
    scratch.chmod(0o755)  # Dovecot's unprivileged auth and mail processes read below it
    try:
        env = {**os.environ, "TMPDIR": str(scratch)}
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
        left_behind = list(scratch.iterdir())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == json.loads(out.read_text())
    assert len(result["rounds"]) == 2 and len(result["loadavg_per_round"]) == 2
    # The default hybrid fill needs more than 2 x 1,000 messages: 250 go all over LMTP, and it says so.
    assert result["dovecot_fill"] == "lmtp" == result["fill"]["dovecot"]["dovecot_fill"]
    assert result["fill"]["mailha"]["client_cpu_ms_per_delivery"] > 0 and result["wall_seconds"] > 0
    summary = result["summary"]
    for server in ("mailha", "dovecot"):
        row = summary[server]
        assert row["messages"] == 250 and result["fill"][server]["delivered"] == 250
        assert (row["unseen_hits"], row["subject_hits"], row["text_hits"]) == (3, 3, 3), server
        for op in ("select", "uid_fetch_all_flags", "uid_search_text", "uid_sort_date", "uid_thread_references"):
            assert row[f"{op}_ms"] > 0, (server, op)
    assert summary["ratio"]["uid_fetch_all_flags_ms"] > 0
    assert result["mailha_disk"]["disk_per_raw"] > 0
    assert left_behind == []
