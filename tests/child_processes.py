"""A test module must not leave a child process behind (running, or exited and never
waited for: a zombie whose Popen later warns "subprocess N is still running").

`make test` ended with such ResourceWarnings and nobody could tell which test
started the processes. Every test module now runs inside `no_leaked_children`
(autouse, module scope, torn down after the module's own fixtures): it lists the
children of this pytest process from /proc before and after the module and fails
the module's last test at teardown naming each child that is new and still there.

Children of session-scoped fixtures are meant to outlive a module: those started
while a session fixture is set up are recorded (`pytest_fixture_setup`), and a
session fixture that starts processes later (a ZooKeeper member restarted after a
test stopped it) registers them with `session_owned`. So are multiprocessing's
resource tracker and fork server (one each per process, ending with it).
"""

from __future__ import annotations

import os
import pathlib
import sys
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Final

import pytest

# A child SIGTERMed by a fixture's teardown may take a moment to go: the check waits
# this long for running ones before it calls them leaked (a zombie is leaked at once).
GRACE_SECONDS: Final = 2.0
_MAX_NAMED: Final = 10
_MAX_CMDLINE: Final = 160

_session_children: set[int] = set()
_owners: list[Callable[[], Iterable[int]]] = []


@dataclass(frozen=True, slots=True)
class Child:
    pid: int
    state: str  # /proc/PID/stat: R, S, D, Z ...
    cmdline: str

    @property
    def zombie(self) -> bool:
        return self.state == "Z"

    def describe(self) -> str:
        what = "exited but never waited for" if self.zombie else "still running"
        return f"pid {self.pid} ({what}): {self.cmdline}"


def children(parent: int | None = None) -> dict[int, Child]:
    """The direct children of `parent` (this process) now, from /proc."""
    parent = os.getpid() if parent is None else parent
    out: dict[int, Child] = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) < 2 or int(fields[1]) != parent:
            continue
        out[int(entry.name)] = Child(int(entry.name), fields[0], _cmdline(entry, stat))
    return out


def _cmdline(entry: pathlib.Path, stat: str) -> str:
    try:
        raw = (entry / "cmdline").read_bytes()[: _MAX_CMDLINE * 4]
    except OSError:
        raw = b""
    text = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
    if not text:  # a zombie has no command line left: its name
        text = "[" + stat[stat.find("(") + 1 : stat.rfind(")")] + "]"
    return text if len(text) <= _MAX_CMDLINE else text[: _MAX_CMDLINE - 1] + "…"


def session_owned(pids: Callable[[], Iterable[int]]) -> None:
    """A session fixture's processes (asked each time a module ends) are not leaks."""
    _owners.append(pids)


def _owned() -> set[int]:
    owned = set(_session_children) | _multiprocessing_helpers()
    for pids in _owners:
        owned.update(pids())
    return owned


def _multiprocessing_helpers() -> set[int]:
    """multiprocessing's resource tracker and fork server: one each per process, started at
    first use and ending with it (they are nobody's Popen and never warn)."""
    pids = set()
    for module, singleton, attribute in (
        ("multiprocessing.resource_tracker", "_resource_tracker", "_pid"),
        ("multiprocessing.forkserver", "_forkserver", "_forkserver_pid"),
    ):
        helper = getattr(sys.modules.get(module), singleton, None)
        pid = getattr(helper, attribute, None)
        if isinstance(pid, int):
            pids.add(pid)
    return pids


def leaked(before: Iterable[int]) -> list[Child]:
    """Children that were not there at `before` and are not a session fixture's, after
    waiting (bounded) for the running ones to exit."""
    known = set(before)
    deadline = time.monotonic() + GRACE_SECONDS
    while True:
        owned = _owned()
        new = [c for pid, c in sorted(children().items()) if pid not in known and pid not in owned]
        if all(c.zombie for c in new) or time.monotonic() >= deadline:
            return new
        time.sleep(0.05)


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest) -> Generator[None]:
    if fixturedef.scope != "session":
        yield
        return
    before = set(children())
    yield
    _session_children.update(set(children()) - before)


@pytest.fixture(scope="module", autouse=True)
def no_leaked_children(request: pytest.FixtureRequest) -> Iterator[None]:
    before = set(children())
    yield
    left = leaked(before)
    if left:
        named = "\n  ".join(c.describe() for c in left[:_MAX_NAMED])
        more = f"\n  ... and {len(left) - _MAX_NAMED} more" if len(left) > _MAX_NAMED else ""
        pytest.fail(
            f"{request.node.nodeid} left {len(left)} child process(es) behind; whatever started "
            f"them must stop them and wait for them (Popen.wait):\n  {named}{more}",
            pytrace=False,
        )
