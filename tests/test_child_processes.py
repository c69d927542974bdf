"""The check that fails a test module leaving a child process behind (tests/child_processes.py)."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest

from tests import child_processes

pytest_plugins = ["pytester"]

_ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_a_running_child_is_listed_and_named_and_gone_once_waited_for() -> None:
    before = set(child_processes.children())
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (child,) = child_processes.children().keys() - before
        assert child == proc.pid
        found = child_processes.children()[child]
        assert not found.zombie and "time.sleep(30)" in found.describe() and "still running" in found.describe()
    finally:
        proc.kill()
        proc.wait()
    assert proc.pid not in child_processes.children()
    assert child_processes.leaked(before) == []


def test_a_child_that_exited_unwaited_is_a_leak_at_once() -> None:
    before = set(child_processes.children())
    proc = subprocess.Popen(["true"])
    try:
        for _ in range(200):
            state = child_processes.children().get(proc.pid)
            if state is not None and state.zombie:
                break
            subprocess.run(["sleep", "0.01"], check=True)
        (left,) = child_processes.leaked(before)
        assert left.pid == proc.pid and "never waited for" in left.describe()
    finally:
        proc.wait()


def test_a_module_that_leaves_a_process_fails_with_its_name(pytester: pytest.Pytester) -> None:
    pytester.syspathinsert(str(_ROOT))
    pytester.makeconftest("from tests.child_processes import no_leaked_children, pytest_fixture_setup  # noqa\n")
    pytester.makepyfile(
        test_leaky=textwrap.dedent(
            """
            import os

            def test_starts_and_forgets():
                os.posix_spawnp("sleep", ["sleep", "30.5"], os.environ)  # no Popen: nothing warns later
            """
        ),
        test_tidy=textwrap.dedent(
            """
            import subprocess

            def test_starts_and_waits():
                subprocess.run(["true"], check=True)
            """
        ),
    )
    before = set(child_processes.children())
    try:
        result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
        result.assert_outcomes(passed=2, errors=1)
        result.stdout.fnmatch_lines(["*test_leaky.py left 1 child process(es) behind*", "*still running): sleep 30.5*"])
        assert "test_tidy.py left" not in result.stdout.str()
    finally:
        for pid in set(child_processes.children()) - before:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
