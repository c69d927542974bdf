"""CPU seconds of a server's processes, per process, from /proc.

A benchmark takes a `CpuSnapshot` of a server's process tree before and after
a workload; `cpu_by_process` says how much CPU each process (by label) used
in between. Processes that ended in between (Dovecot's per-session `imap`
and `imap-login` processes) cannot be told apart once reaped: their share is
the tree root's reaped-children time, reported as "exited", without the CPU
those processes had already used before the first snapshot.

The snapshot also keeps each live process's major page faults (faults that
waited for the disk): a server whose event loop stalls on reads of a
memory-mapped file shows them here (issue 13's 300-session p99 question).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

_TICKS: Final = os.sysconf("SC_CLK_TCK")
EXITED: Final = "exited"


def _stat(pid: int) -> list[str] | None:
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float:
    """User+system CPU of one process (all its threads) so far; 0 once it is gone."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS if fields is not None else 0.0


def major_faults(pid: int) -> int:
    """Page faults of one process (all its threads) that had to read from disk; 0 once it is gone."""
    fields = _stat(pid)
    return int(fields[9]) if fields is not None else 0


def reaped_cpu_seconds(pid: int) -> float:
    """CPU of the children `pid` has waited for (they ended), with theirs in turn."""
    fields = _stat(pid)
    return (int(fields[13]) + int(fields[14])) / _TICKS if fields is not None else 0.0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = children(todo.pop())
        found.extend(kids)
        todo.extend(kids)
    return found


def comm(pid: int) -> str:
    try:
        return pathlib.Path(f"/proc/{pid}/comm").read_text().strip() or str(pid)
    except OSError:
        return str(pid)


@dataclass(frozen=True)
class CpuSnapshot:
    processes: dict[int, tuple[str, float]]  # pid -> (label, CPU seconds so far)
    reaped: float  # CPU of the tree's ended processes (the roots' reaped children)
    faults: dict[int, int] = field(default_factory=dict)  # pid -> major page faults so far


def snapshot(roots: dict[int, str], label: Callable[[int], str] = comm) -> CpuSnapshot:
    """The roots (pid -> label) and every process under them (labelled by `label`)."""
    processes: dict[int, tuple[str, float]] = {}
    reaped = 0.0
    for root, name in roots.items():
        processes[root] = (name, cpu_seconds(root))
        reaped += reaped_cpu_seconds(root)
        for pid in descendants(root):
            processes[pid] = (label(pid), cpu_seconds(pid))
    return CpuSnapshot(processes, reaped, {pid: major_faults(pid) for pid in processes})


def cpu_by_process(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """CPU seconds used between the snapshots, summed per label; ended processes under EXITED."""
    out: dict[str, float] = {}
    for pid, (name, seconds) in after.processes.items():
        earlier = before.processes.get(pid)
        used = seconds - (earlier[1] if earlier is not None and earlier[0] == name else 0.0)
        out[name] = out.get(name, 0.0) + used
    gone = sum(
        seconds
        for pid, (name, seconds) in before.processes.items()
        if pid not in after.processes or after.processes[pid][0] != name  # ended (its pid maybe reused)
    )
    exited = after.reaped - before.reaped - gone
    if exited > 0 or gone:
        out[EXITED] = max(0.0, exited)
    return out


def major_faults_by_process(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, int]:
    """Major page faults between the snapshots, summed per label, of the processes alive at the end."""
    out: dict[str, int] = {}
    for pid, count in after.faults.items():
        earlier = before.processes.get(pid)
        same = earlier is not None and earlier[0] == after.processes[pid][0]
        name = after.processes[pid][0]
        out[name] = out.get(name, 0) + count - (before.faults.get(pid, 0) if same else 0)
    return out
