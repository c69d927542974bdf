"""Issue 14: the services of `mailha standalone` die with it, however it dies
(before: started in their own session without a death signal, they outlived
a SIGKILLed parent and a busy imapd kept its port)."""

from __future__ import annotations

import os
import pathlib
import signal
import time

import pytest

from tests.lmtp_standalone import standalone_node

pytestmark = pytest.mark.integration


def _processes_mentioning(text: str) -> dict[int, str]:
    found = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            continue  # a zombie holds no port and runs nothing
        line = " ".join(a.decode(errors="replace") for a in argv if a)
        if text in line:
            found[int(entry.name)] = line
    return found


def test_services_die_with_a_killed_standalone_parent(tmp_path: pathlib.Path) -> None:
    with standalone_node(tmp_path):
        procs = _processes_mentioning(str(tmp_path / "node"))
        parents = [pid for pid, line in procs.items() if " standalone " in f" {line} "]
        assert len(parents) == 1, procs
        services = set(procs) - set(parents)
        assert len(services) >= 3, procs  # store, lmtpd, imapd
        os.kill(parents[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while services & set(_processes_mentioning(str(tmp_path / "node"))) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not services & set(_processes_mentioning(str(tmp_path / "node"))), "services outlived their parent"
