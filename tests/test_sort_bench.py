"""`mailha bench sort`: its own store + imapd, a filled mailbox, SORT/THREAD timings; cleans up."""

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
from bench.sort_bench import corpus

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_the_generated_mail_threads_and_varies() -> None:
    mail = corpus(200)
    assert len(mail) == 200 and len(set(mail)) == 200
    assert sum(b"\r\nReferences: <m" in m for m in mail) > 20  # replies exist, so THREAD has work
    assert all(b"\r\n\r\n" in m for m in mail)


@pytest.mark.integration
def test_bench_sort_reports_p50_keys(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "sort.json"
    argv = [sys.executable, "-m", "mailha.cli", "bench", "sort", "--messages", "300", "--runs", "2", "--json"]
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="mhs-", dir="/tmp"))  # short unix socket path
    try:
        env = {**os.environ, "TMPDIR": str(scratch)}
        done = subprocess.run(
            [*argv, "--output", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        left_behind = list(scratch.iterdir())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == json.loads(out.read_text())
    assert result["sort_messages"] == 300
    for key in ("sort_10k_cold_ms", "thread_10k_cold_ms", "sort_10k_ms", "thread_10k_ms", "sort_search_10k_ms"):
        assert 0 < result[key] < 60_000, key
    assert len(result["sort_ms_all"]) == 2 and len(result["thread_ms_all"]) == 2
    assert not left_behind


@pytest.mark.integration
@pytest.mark.skipif(dovecot.available() is not None, reason=str(dovecot.available()))
def test_bench_sort_compares_with_dovecot_in_the_same_run(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "sort.json"
    argv = [sys.executable, "-m", "mailha.cli", "bench", "sort", "--messages", "200", "--runs", "1", "--dovecot"]
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="mhs-", dir="/tmp"))
    scratch.chmod(0o755)  # Dovecot's unprivileged processes must reach its directory inside
    try:
        env = {**os.environ, "TMPDIR": str(scratch)}
        done = subprocess.run(
            [*argv, "--json", "--output", str(out)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for key in ("sort_10k_cold_ms", "thread_10k_cold_ms", "sort_10k_ms", "thread_10k_ms"):
        assert result["dovecot_" + key] > 0, key
        assert result[key.removesuffix("_ms") + "_vs_dovecot"] == round(result[key] / result["dovecot_" + key], 2)
