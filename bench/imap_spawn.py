"""`mailha bench imap --spawn`: a throwaway store + imapd on loopback for the benchmark.

Starts `mailha store serve` (unix socket in a temp dir) and `mailha imapd serve`
(plaintext login allowed: loopback only, bench passwords) on a free port,
measures their CPU time from /proc, and stops and removes everything at the end.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Final

from store.client import StoreClient

ROOT: Final = pathlib.Path(__file__).resolve().parent.parent
_TICKS: Final = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User+system CPU of one process (all its threads); 0 once it is gone."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _children(pid: int) -> list[int]:
    try:
        text = pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


@dataclass
class SpawnedStack:
    """store + imapd processes; `cpu()` is their CPU seconds so far (imapd with its workers)."""

    workers: int = 1
    # imapd reads SELECT/STATUS/LIST/FETCH from the store's LMDB (`--store-data`), as beside a store.
    local_reads: bool = True
    port: int = 0
    directory: pathlib.Path = field(default_factory=lambda: pathlib.Path(tempfile.mkdtemp(prefix="mailha-bench-imap-")))
    store: subprocess.Popen[bytes] | None = None
    imapd: subprocess.Popen[bytes] | None = None

    @property
    def store_address(self) -> str:
        return f"unix:{self.directory / 'store.sock'}"

    def _start(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.directory / log, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "mailha.cli", *args], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
            )

    def start(self, timeout: float = 30.0) -> SpawnedStack:
        try:
            self.store = self._start(
                ["store", "serve", "--data", str(self.directory / "data"), "--listen", self.store_address], "store.log"
            )
            with StoreClient(self.store_address) as client:
                client.wait_ready(timeout)
                epoch = client.epoch()
            self.port = _free_port()
            argv = ["imapd", "serve", "--store", self.store_address, "--epoch", str(epoch)]
            argv += ["--listen", f"127.0.0.1:{self.port}", "--allow-plaintext-login", "--workers", str(self.workers)]
            if self.local_reads:
                argv += ["--store-data", str(self.directory / "data")]
            self.imapd = self._start(argv, "imapd.log")
            self._wait_listening(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.imapd is not None
            if self.imapd.poll() is not None:
                raise RuntimeError(f"imapd exited: {(self.directory / 'imapd.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as conn:
                    if conn.recv(100).startswith(b"* OK"):
                        # With workers, give the others a moment to bind the port too.
                        time.sleep(0.5 if self.workers > 1 else 0.0)
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("imapd did not start listening")
            time.sleep(0.1)

    def cpu(self) -> dict[str, float]:
        store = _cpu_seconds(self.store.pid) if self.store is not None else 0.0
        imapd = 0.0
        if self.imapd is not None:
            imapd = _cpu_seconds(self.imapd.pid) + sum(_cpu_seconds(c) for c in _children(self.imapd.pid))
        return {"store": store, "imapd": imapd}

    def stop(self) -> None:
        for proc in (self.imapd, self.store):
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)
