"""`mailha bench mailbox --fill import`: fill the INBOX through `mailha import mbox`.

A million messages over LMTP (one message per transaction, as Postfix
delivers) takes well over an hour on a 2-core machine; migrating an existing
spool is the other way a large mailbox comes to be, and the operator's tool
for it is `mailha import`. This fill writes the deterministic corpus
(bench/mailbox_corpus.py, the same bytes LMTP delivers) as an mboxrd file with
`mailha export mbox`'s writer, then runs the real command
`mailha import mbox FILE --user bench --store ADDR` as a child process and
times it. Writing the file is timed apart: it is the spool the operator
already has, not part of the import.

While the import runs, the RSS of the store and of the importer are sampled
every second (their peaks are reported), so memory while filling is measured
too.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import time
from typing import Final

from backup.export import MboxFolder
from bench.mailbox_corpus import T0, message
from mailha_api import store_pb2

SAMPLE_EVERY: Final = 1.0  # seconds between RSS samples while importing


def _status_kib(pid: int, field: str) -> int:
    try:
        text = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:  # gone between two samples
        return 0
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def write_mbox(root: pathlib.Path, count: int, seed: int) -> tuple[pathlib.Path, int]:
    """Messages 0..count-1 as root/INBOX.mbox (no flags; the internal date is the corpus Date:).
    Returns the path and the raw bytes of the messages (as LMTP would deliver them)."""
    folder = MboxFolder(root, "INBOX")
    raw = 0
    try:
        for n in range(count):
            data = message(n, seed)
            raw += len(data)
            folder.add(store_pb2.MessageMeta(internal_date=T0 + n * 61), data)
    finally:
        folder.close()
    return root / "INBOX.mbox", raw


def fill_by_import(
    root: pathlib.Path, *, store_addr: str, epoch: int, user: str, count: int, seed: int, store_pid: int
) -> dict[str, float]:
    """Write the corpus as an mbox in `root`, import it with `mailha import mbox`, delete the file."""
    spool = root / "spool"
    start = time.perf_counter()
    path, raw = write_mbox(spool, count, seed)
    written = time.perf_counter() - start
    mbox_bytes = path.stat().st_size
    argv = [sys.executable, "-m", "mailha.cli", "import", "mbox", str(path), "--user", user]
    argv += ["--store", store_addr, "--epoch", str(epoch)]
    peaks = {"store_rss_kib": 0, "store_rss_anon_kib": 0, "importer_rss_kib": 0}
    log_path = root / "import.log"
    with open(log_path, "ab") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None:
                peaks["store_rss_kib"] = max(peaks["store_rss_kib"], _status_kib(store_pid, "VmRSS"))
                peaks["store_rss_anon_kib"] = max(peaks["store_rss_anon_kib"], _status_kib(store_pid, "RssAnon"))
                peaks["importer_rss_kib"] = max(peaks["importer_rss_kib"], _status_kib(proc.pid, "VmHWM"))
                try:
                    proc.wait(timeout=SAMPLE_EVERY)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        total = time.perf_counter() - start
    path.unlink()
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"mailha import mbox exited with {proc.returncode}:\n{tail}")
    return {
        "delivered": count,
        "raw_bytes": raw,
        "fill_method_import": 1.0,
        "mbox_write_seconds": round(written, 1),
        "mbox_bytes": mbox_bytes,
        "fill_seconds": round(total, 1),
        "delivery_per_s": round(count / total, 1),
        **{f"{k.removesuffix('_kib')}_peak_while_filling_kib": v for k, v in peaks.items()},
    }
