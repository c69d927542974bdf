"""Per-process CPU accounting of the benchmarks (bench/process_cpu.py), on real processes."""

from __future__ import annotations

import subprocess
import sys
import time

from bench import process_cpu

_BURN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"


def test_cpu_is_split_per_process_and_ended_children_count_once() -> None:
    # A parent that starts one child burning 0.3 s and then waits; the child ends between the snapshots.
    code = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', {_BURN.format(seconds=0.3)!r}])\n"
        "child.wait()\n"
        "time.sleep(30)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while not process_cpu.children(parent.pid):
            assert time.monotonic() < deadline, "the child did not start"
            time.sleep(0.01)
        before = process_cpu.snapshot({parent.pid: "parent"}, label=lambda _pid: "child")
        assert set(name for name, _ in before.processes.values()) == {"parent", "child"}
        while process_cpu.children(parent.pid) or process_cpu.reaped_cpu_seconds(parent.pid) == 0:
            assert time.monotonic() < deadline, "the child did not end"
            time.sleep(0.01)
        after = process_cpu.snapshot({parent.pid: "parent"}, label=lambda _pid: "child")
        used = process_cpu.cpu_by_process(before, after)
        # The child's CPU after the first snapshot, not what it had used before it.
        assert 0.0 < used[process_cpu.EXITED] <= 0.35
        assert "child" not in used and used["parent"] >= 0.0
        whole = process_cpu.cpu_by_process(process_cpu.CpuSnapshot({}, 0.0), after)
        assert 0.25 <= whole[process_cpu.EXITED] <= 0.5  # all of the child's 0.3 s
    finally:
        parent.kill()
        parent.wait()


def test_major_faults_are_counted_per_label_between_snapshots() -> None:
    before = process_cpu.CpuSnapshot({1: ("imapd", 0.0), 2: ("store", 0.0)}, 0.0, {1: 5, 2: 7})
    # pid 2 was reused by another process; pid 3 started in between.
    live = {1: ("imapd", 0.0), 2: ("worker", 0.0), 3: ("worker", 0.0)}
    after = process_cpu.CpuSnapshot(live, 0.0, {1: 9, 2: 2, 3: 4})
    assert process_cpu.major_faults_by_process(before, after) == {"imapd": 4, "worker": 6}


def test_snapshot_reads_major_faults_of_live_processes() -> None:
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        snap = process_cpu.snapshot({parent.pid: "parent"})
        assert set(snap.faults) == {parent.pid}
        assert snap.faults[parent.pid] == process_cpu.major_faults(parent.pid) >= 0
    finally:
        parent.kill()
        parent.wait()
    assert process_cpu.major_faults(parent.pid) == 0  # gone: nothing to read
