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

import multiprocessing
import os
import pathlib
import subprocess
import sys
import threading
import time
from typing import Final

from backup.export import mbox_entry
from bench.mailbox_corpus import T0, message
from bench.proc_status import status_kib
from mailha_api import store_pb2

CHUNK: Final = 2000  # messages a generating worker formats at a time
GENERATORS: Final = 2  # processes formatting the corpus (it costs ~0.3 ms of CPU a message)
SAMPLE_EVERY: Final = 1.0  # seconds between RSS samples while importing


def _status_kib(pid: int, field: str) -> int:
    try:
        return status_kib(pid, field)
    except (OSError, LookupError):  # gone (or a zombie) between two samples
        return 0


def _mbox_chunk(args: tuple[int, int, int]) -> tuple[bytes, int]:
    """Messages first..end-1 as mbox entries, and their raw size (a worker process's share)."""
    first, end, seed = args
    entries: list[bytes] = []
    raw = 0
    for n in range(first, end):
        data = message(n, seed)
        raw += len(data)
        entries.append(mbox_entry(store_pb2.MessageMeta(internal_date=T0 + n * 61), data))
    return b"".join(entries), raw


def write_mbox(path: pathlib.Path, count: int, seed: int, workers: int) -> tuple[int, int]:
    """Messages 0..count-1 in order as mboxrd entries into `path` (a file or a named pipe), no flags,
    the internal date the corpus Date:, formatted by `workers` processes. Returns (raw bytes of the
    messages as LMTP would deliver them, bytes written)."""
    raw = written = 0
    chunks = [(first, min(count, first + CHUNK), seed) for first in range(0, count, CHUNK)]
    with (
        multiprocessing.get_context("forkserver").Pool(workers) as pool,
        open(path, "wb") as out,
    ):
        for entries, size in pool.imap(_mbox_chunk, chunks):
            out.write(entries)
            raw += size
            written += len(entries)
    return raw, written


def fill_by_import(
    root: pathlib.Path, *, store_addr: str, epoch: int, user: str, count: int, seed: int, store_pid: int
) -> dict[str, float]:
    """Import the corpus with `mailha import mbox` reading a named pipe that the corpus is written
    into as it goes (no 5 GB spool file for a million messages; generating overlaps importing)."""
    spool = root / "spool"
    spool.mkdir(mode=0o700)
    path = spool / "INBOX.mbox"
    os.mkfifo(path, 0o600)
    argv = [sys.executable, "-m", "mailha.cli", "import", "mbox", str(path), "--user", user]
    argv += ["--store", store_addr, "--epoch", str(epoch)]
    peaks = {"store_rss_kib": 0, "store_rss_anon_kib": 0, "importer_rss_kib": 0}
    sizes: list[tuple[int, int]] = []
    failed: list[BaseException] = []

    def writer() -> None:
        try:
            sizes.append(write_mbox(path, count, seed, GENERATORS))
        except BaseException as exc:  # the importer went away (BrokenPipeError) or generating failed
            failed.append(exc)

    log_path = root / "import.log"
    with open(log_path, "ab") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        thread = threading.Thread(target=writer, name="mbox-writer", daemon=True)
        thread.start()
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
        thread.join(timeout=60)
    if proc.returncode != 0 or failed or not sizes:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"mailha import mbox exited with {proc.returncode} ({failed[:1]}):\n{tail}")
    raw, mbox_bytes = sizes[0]
    return {
        "delivered": count,
        "raw_bytes": raw,
        "fill_method_import": 1.0,
        "mbox_bytes": mbox_bytes,
        "fill_seconds": round(total, 1),
        "delivery_per_s": round(count / total, 1),
        **{f"{k.removesuffix('_kib')}_peak_while_filling_kib": v for k, v in peaks.items()},
    }
