"""A process's memory figures from /proc/PID/status, in KiB (Linux): the one reader the
benchmarks and the memory tests share.

VmRSS counts mapped file pages too (the store's LMDB pages, page cache); RssAnon is the
process's own memory; VmHWM is the peak VmRSS."""

from __future__ import annotations

import pathlib


def status_kib(pid: int, field: str = "VmRSS") -> int:
    """`field` of the process's status in KiB. OSError when the process is gone; LookupError
    when the status has no such line (a zombie has no memory lines), never a silent 0."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(f"/proc/{pid}/status has no {field}")
