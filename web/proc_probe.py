"""Facts about a node's service processes read from /proc: no agent, no client library.

A node's services are the `mailha` processes whose command line names its
store socket (the store listens on it, imapd and lmtpd connect to it). Per
process: CPU seconds, resident memory, established TCP connections (for
imapd: its IMAP sessions). Plus the size of the store's LMDB file, found
from the store process's `--data` argument.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

from store.layout import data_file

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_ESTABLISHED = "01"


@dataclass(frozen=True)
class ProcessFacts:
    service: str  # store, imapd, lmtpd, web
    pid: int
    cpu_seconds: float
    rss_bytes: int
    tcp_established: int


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _argv(pid: int) -> list[str]:
    raw = _read(f"/proc/{pid}/cmdline")
    return [] if raw is None else raw.rstrip("\0").split("\0")


def service_of(argv: list[str]) -> str | None:
    """'store' for `... mailha store serve ...` etc.; None for anything else."""
    for i, arg in enumerate(argv):
        if arg.endswith("mailha") or arg == "mailha.cli" or arg.endswith("/mailha/cli.py"):
            rest = argv[i + 1 : i + 3]
            if len(rest) == 2 and rest[1] == "serve" and rest[0] in ("store", "imapd", "lmtpd", "web"):
                return rest[0]
    return None


def _established_inodes() -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        text = _read(table) or ""
        for line in text.splitlines()[1:]:
            cols = line.split()
            if len(cols) > 9 and cols[3] == _ESTABLISHED:
                inodes.add(cols[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    out: set[str] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def _cpu_and_rss(pid: int) -> tuple[float, int] | None:
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat.rpartition(")")[2].split()
    # fields[0] is the state (field 3); utime, stime are fields 14, 15; rss is field 24.
    cpu = (int(fields[11]) + int(fields[12])) / _CLK_TCK
    return cpu, int(fields[21]) * _PAGE


def node_processes(store_socket: str) -> tuple[list[ProcessFacts], int | None]:
    """The services of the node whose store socket is `store_socket` (a path, no 'unix:'),
    and the size of its store's LMDB data file (None if no store process names one)."""
    established = _established_inodes()
    out: list[ProcessFacts] = []
    size: int | None = None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        argv = _argv(pid)
        service = service_of(argv)
        if service is None or not any(store_socket in a for a in argv):
            continue
        usage = _cpu_and_rss(pid)
        if usage is None:
            continue
        tcp = len(_socket_inodes(pid) & established) if service == "imapd" else 0
        out.append(ProcessFacts(service, pid, usage[0], usage[1], tcp))
        if service == "store" and "--data" in argv:
            size = _data_size(pathlib.Path(argv[argv.index("--data") + 1]))
    return out, size


def _data_size(data_dir: pathlib.Path) -> int | None:
    """Bytes on disk of the store's LMDB data file."""
    try:
        return data_file(data_dir).stat().st_blocks * 512
    except OSError:
        return None
