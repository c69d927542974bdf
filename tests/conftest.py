"""Fixtures shared by every test area (each area's fixtures live in its own module)."""

import pathlib
import subprocess
import sys

import pytest

from tests.child_processes import no_leaked_children, pytest_fixture_setup  # noqa: F401
from tests.ha_agent_lab import agent_lab, agent_lab_base  # noqa: F401
from tests.ha_lab_fixtures import ha_lab  # noqa: F401
from tests.store_fixtures import mail_store, store_server  # noqa: F401
from tests.zk_fixtures import zk_client, zk_config, zk_ensemble, zk_session_ensemble  # noqa: F401

_ROOT = pathlib.Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test compiled modules older than their sources: Python would import the
    old compiled code, not what the tree says (scripts/build_compiled.py)."""
    check = [sys.executable, str(_ROOT / "scripts" / "build_compiled.py"), "--check"]
    result = subprocess.run(check, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise pytest.UsageError(result.stderr.strip() or result.stdout.strip())
