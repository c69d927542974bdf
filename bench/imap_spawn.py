"""`mailha bench imap --spawn`: a throwaway store + imapd on loopback for the benchmark.

Starts `mailha store serve` (unix socket in a temp dir) and `mailha imapd serve`
(plaintext login allowed: loopback only, bench passwords) on a free port,
measures their CPU time from /proc, and stops and removes everything at the end.
"""

from __future__ import annotations

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

from bench import process_cpu
from nodeconf.services import service_env
from store.client import StoreClient

ROOT: Final = pathlib.Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
                [sys.executable, "-m", "mailha.cli", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=service_env(args[0]),  # as started in production
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
        store = process_cpu.cpu_seconds(self.store.pid) if self.store is not None else 0.0
        imapd = 0.0
        if self.imapd is not None:
            pids = [self.imapd.pid, *process_cpu.children(self.imapd.pid)]
            imapd = sum(process_cpu.cpu_seconds(pid) for pid in pids)
        return {"store": store, "imapd": imapd}

    def cpu_snapshot(self) -> process_cpu.CpuSnapshot:
        """Per process: "store", "imapd" (with --workers: the parent) and "imapd-worker" (the workers, summed)."""
        roots = {proc.pid: name for proc, name in ((self.store, "store"), (self.imapd, "imapd")) if proc is not None}
        return process_cpu.snapshot(roots, label=lambda _pid: "imapd-worker")

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
