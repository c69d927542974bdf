"""A private store + lmtpd pair on a directory, for the benchmark and tests.

Started with the same command lines standalone mode uses (nodeconf.services),
so what is measured and tested is what runs.
"""

from __future__ import annotations

import contextlib
import pathlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

from nodeconf import services
from store.client import wait_for_store


@dataclass(frozen=True)
class LocalServers:
    root: pathlib.Path
    store: str  # gRPC address
    epoch: int
    lmtp_port: int
    store_process: subprocess.Popen[bytes]
    lmtpd_process: subprocess.Popen[bytes]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    """Until 127.0.0.1:port accepts connections; fails early if `proc` (the server) exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server process exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def start_lmtpd(
    root: pathlib.Path,
    store: str,
    epoch: int,
    *,
    max_message_size: int,
    name: str = "lmtpd",
    store_data: pathlib.Path | None = None,
) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    spec = services.lmtpd_service(
        store,
        epoch,
        f"127.0.0.1:{port}",
        max_message_size=max_message_size,
        hostname="lmtp.test",
        store_data=store_data,
    )
    with open(root / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(spec.argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc)
    except BaseException:
        stop(proc)
        raise
    return port, proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def local_servers(
    root: pathlib.Path,
    *,
    max_message_size: int,
    default_quota: int = 0,
    fulltext: bool = True,
    local_writes: bool = True,
) -> Iterator[LocalServers]:
    store_dir = root / "store"
    store_dir.mkdir(parents=True, exist_ok=True)
    store_addr = f"unix:{root / 'store.sock'}"
    spec = services.store_service(
        store_dir,
        store_addr,
        max_message_size=max_message_size,
        default_quota=default_quota,
        fence_next=True,
        fulltext=fulltext,
    )
    with open(root / "store.log", "ab") as log:
        # The environment standalone mode and the agent start it with (nodeconf.services).
        store_proc = subprocess.Popen(
            spec.argv, stdout=log, stderr=subprocess.STDOUT, env=services.service_env("store")
        )
    try:
        epoch = wait_for_store(store_addr)
        # Beside its store, as standalone mode runs it: appends over the local write socket.
        port, lmtpd_proc = start_lmtpd(
            root, store_addr, epoch, max_message_size=max_message_size, store_data=store_dir if local_writes else None
        )
        try:
            yield LocalServers(root, store_addr, epoch, port, store_proc, lmtpd_proc)
        finally:
            stop(lmtpd_proc)
    finally:
        stop(store_proc)
