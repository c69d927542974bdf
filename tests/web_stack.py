"""A real `mailha standalone` (store, lmtpd, imapd, web) on free ports, an SMTP sink
standing in for the forwarding relay, and one headless Chromium (Debian's) per test module."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import ViewportSize

from store.admin import Admin
from tests.imap_clients_stack import free_port
from tests.lmtp_standalone import reachable_tmp_dir
from tests.store_fixtures import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = ROOT / "bench-results" / "web"
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
MOBILE: ViewportSize = {"width": 390, "height": 844}


@dataclass
class SmtpSink:
    """A minimal SMTP server that keeps what it receives: (sender, recipients, data)."""

    port: int
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    server: socketserver.ThreadingTCPServer | None = None

    def wait_for(self, count: int, timeout: float = 20.0) -> list[tuple[str, list[str], bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.received)


def start_smtp_sink() -> SmtpSink:
    sink = SmtpSink(0)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(b"220 sink ESMTP\r\n")
            sender, rcpts = "", list[str]()
            while True:
                line = self.rfile.readline(4096)
                if not line:
                    return
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    self.wfile.write(b"250 sink\r\n")
                elif verb == b"MAIL":
                    sender, rcpts = line.decode().split(":", 1)[1].strip().strip("<>"), []
                    self.wfile.write(b"250 ok\r\n")
                elif verb == b"RCPT":
                    rcpts.append(line.decode().split(":", 1)[1].strip().strip("<>"))
                    self.wfile.write(b"250 ok\r\n")
                elif verb == b"DATA":
                    self.wfile.write(b"354 go\r\n")
                    data = bytearray()
                    while True:
                        chunk = self.rfile.readline(1 << 20)
                        if not chunk or chunk == b".\r\n":
                            break
                        data += chunk
                    sink.received.append((sender, rcpts, bytes(data)))
                    self.wfile.write(b"250 queued\r\n")
                elif verb == b"QUIT":
                    self.wfile.write(b"221 bye\r\n")
                    return
                else:
                    self.wfile.write(b"250 ok\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    sink.server = server
    sink.port = int(server.server_address[1])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return sink


@dataclass
class WebStack:
    data: pathlib.Path
    process: subprocess.Popen[bytes]
    web_port: int
    lmtp_port: int
    imap_port: int
    sink: SmtpSink

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.web_port}"

    @property
    def backup_repo(self) -> pathlib.Path:
        return self.data / "backups"

    @property
    def store(self) -> str:
        return f"unix:{self.data / 'run' / 'store.sock'}"

    def admin(self) -> Admin:
        return Admin.connect(self.store)


def _wait_port(port: int, process: subprocess.Popen[bytes], log: pathlib.Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mailha standalone exited: {log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open; {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def web_stack() -> Iterator[WebStack]:
    # Started as root, standalone runs every service (the web app too) as the service
    # user, so the data directory lies where that user can reach it.
    with reachable_tmp_dir() as data:
        yield from _web_stack(data)


def _web_stack(data: pathlib.Path) -> Iterator[WebStack]:
    sink = start_smtp_sink()
    web, lmtp, imap, imaps = free_port(), free_port(), free_port(), free_port()
    out = data / "standalone.out"
    argv = [
        sys.executable, "-m", "mailha.cli", "standalone", "--data", str(data),
        "--web-listen", f"127.0.0.1:{web}", "--lmtp-listen", f"127.0.0.1:{lmtp}",
        "--imap-listen", f"127.0.0.1:{imap}", "--imaps-listen", f"127.0.0.1:{imaps}",
        "--allow-plaintext-login", "--web-sample-interval", "1",
        "--forward-relay", f"127.0.0.1:{sink.port}",
        "--backup-repo", str(data / "backups"),
        "--imapd-metrics-listen", f"127.0.0.1:{free_port()}", "--lmtpd-metrics-listen", f"127.0.0.1:{free_port()}",
    ]  # fmt: skip
    with open(out, "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    try:
        for port in (web, lmtp, imap):
            _wait_port(port, process, out)
        stack = WebStack(data, process, web, lmtp, imap, sink)
        admin = stack.admin()
        try:
            admin.add_user("boss", "boss-password", 0)
            admin.set_role("boss", admin=True)
            admin.add_user("alice", "alice-password", 1024 * 1024)
            admin.add_address("alice@example.test", "alice")
        finally:
            admin.close()
        yield stack
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        assert sink.server is not None
        sink.server.shutdown()
        sink.server.server_close()
