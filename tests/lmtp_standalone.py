"""A standalone mailha node (store, lmtpd, imapd) on free loopback ports, for LMTP end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

from lmtpd.local_servers import free_port, wait_for_port
from nodeconf.paths import StandalonePaths
from store.client import wait_for_store


@dataclass(frozen=True)
class Node:
    store: str
    lmtp_port: int
    imap: tuple[str, int] | None  # announced IMAP endpoint, if the node serves IMAP
    imaps_port: int  # implicit TLS
    paths: StandalonePaths


@contextlib.contextmanager
def reachable_tmp_dir() -> Iterator[pathlib.Path]:
    """A fresh directory the service user can pass through (pytest's own tmp_path is
    under a 0700 root directory), removed afterwards."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="mailha-test-", dir="/tmp"))
    try:
        os.chmod(path, 0o711)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def standalone_node(tmp: pathlib.Path, *extra: str, service_user: str = "root") -> Iterator[Node]:
    """service_user "root" by default: `tmp` is usually pytest's, which only root can reach
    (pass a `reachable_tmp_dir()` and "mailha" for the privilege-drop tests)."""
    lmtp_port = free_port()
    imaps_port = free_port()
    out_path = tmp / "standalone.out"
    argv = ["standalone", "--data", str(tmp / "node"), "--lmtp-listen", f"127.0.0.1:{lmtp_port}", "--demo-user"]
    argv += ["--web-listen", ""]  # no web app on the fixed 8443
    argv += ["--imap-listen", f"127.0.0.1:{free_port()}", "--imaps-listen", f"127.0.0.1:{imaps_port}"]
    argv += ["--service-user", service_user, *extra]
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailha.cli", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        paths = StandalonePaths(tmp / "node")
        deadline = time.monotonic() + 60
        while "logs in" not in out_path.read_text(errors="replace"):
            assert proc.poll() is None, out_path.read_text(errors="replace")
            assert time.monotonic() < deadline, out_path.read_text(errors="replace")
            time.sleep(0.1)
        wait_for_store(paths.store_socket)
        wait_for_port(lmtp_port, proc)
        text = out_path.read_text(errors="replace")
        found = re.search(r"IMAP\b[^\n]*?\b(127\.0\.0\.1):(\d+)", text)
        if found:
            wait_for_port(int(found[2]), proc)
            wait_for_port(imaps_port, proc)
        imap = (found[1], int(found[2])) if found else None
        yield Node(paths.store_socket, lmtp_port, imap, imaps_port, paths)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
