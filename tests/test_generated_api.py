"""The committed generated modules match proto/ (regenerate with `make proto`)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_generated_code_is_up_to_date(tmp_path: pathlib.Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "genproto.py"), str(tmp_path)], check=True, capture_output=True
    )
    for fresh in sorted((tmp_path / "mailha_api").iterdir()):
        committed = ROOT / "mailha_api" / fresh.name
        assert committed.exists(), f"{committed} missing: run `make proto`"
        assert committed.read_bytes() == fresh.read_bytes(), f"{committed} is stale: run `make proto`"
