"""The imapd process with a real store: a fenced writer closes every
connection, SIGTERM drains with BYE, and `mailha standalone` serves IMAP."""

from __future__ import annotations

import imaplib
import pathlib
import signal
import socket
import subprocess
import sys
import time

import grpc
import pytest

from imapd.tls import client_context
from mailha_api import store_pb2, store_pb2_grpc
from tests.imap_clients_stack import USERS, ImapStack, free_port, imap_stack, wait_port
from tests.store_fixtures import ROOT

pytestmark = pytest.mark.integration
__all__ = ["imap_stack"]


def _read_until(sock: socket.socket, marker: bytes, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_fenced_imapd_answers_unavailable_then_sigterm_drains(imap_stack: ImapStack) -> None:
    ctx = imap_stack.ssl_context()
    a = imaplib.IMAP4_SSL("127.0.0.1", imap_stack.tls_port, ssl_context=ctx)
    b = imaplib.IMAP4_SSL("127.0.0.1", imap_stack.tls_port, ssl_context=ctx)
    a.login("alice", USERS["alice"])
    b.login("alice", USERS["alice"])
    a.select("INBOX")
    assert a.append("INBOX", None, None, b"Subject: before\r\n\r\nfine\r\n")[0] == "OK"
    # Another writer takes over: the store is fenced to a newer epoch.
    with grpc.insecure_channel(imap_stack.store.address) as channel:
        stub = store_pb2_grpc.MailStoreStub(channel)
        stub.Fence(store_pb2.FenceRequest(epoch=imap_stack.epoch + 1))
    typ, data = a.append("INBOX", None, None, b"Subject: after\r\n\r\nrefused\r\n")
    assert typ == "NO" and data[0] is not None and data[0].startswith(b"[UNAVAILABLE]")
    time.sleep(0.3)
    with pytest.raises(imaplib.IMAP4.abort):
        b.noop()
    assert b"UNAVAILABLE" in b"".join(v for v in b.untagged_responses.get("BYE", []) if isinstance(v, bytes))
    a.shutdown()
    b.shutdown()

    # A fresh imapd with the new epoch serves again; SIGTERM drains it.
    port = free_port()
    argv = [sys.executable, "-m", "mailha.cli", "imapd", "serve", "--store", imap_stack.store.address]
    argv += ["--epoch", str(imap_stack.epoch + 1), "--listen", f"127.0.0.1:{port}", "--allow-plaintext-login"]
    log = imap_stack.cert.parent.parent / "imapd2.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_port(port, process, log)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            assert _read_until(sock, b"\r\n").startswith(b"* OK")
            sock.sendall(b"l1 LOGIN alice " + USERS["alice"].encode() + b"\r\nl2 APPEND INBOX {4+}\r\nnew!\r\n")
            assert b"l2 OK [APPENDUID" in _read_until(sock, b"l2 ")
            process.send_signal(signal.SIGTERM)
            assert b"* BYE [UNAVAILABLE] server moving, reconnect\r\n" in _read_until(sock, b"reconnect")
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_standalone_serves_imap_with_generated_certificate(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    imap, imaps, lmtp = free_port(), free_port(), free_port()
    argv = [sys.executable, "-m", "mailha.cli", "standalone", "--data", str(data), "--demo-user"]
    argv += ["--service-user", "root"]  # tmp_path is under a directory only root can reach
    argv += ["--imap-listen", f"127.0.0.1:{imap}", "--imaps-listen", f"127.0.0.1:{imaps}"]
    argv += ["--lmtp-listen", f"127.0.0.1:{lmtp}", "--web-listen", ""]  # no web app on the fixed 8443
    log = tmp_path / "standalone.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_port(imap, process, log, timeout=60)
        wait_port(imaps, process, log, timeout=60)
        cert = data / "tls" / "imapd-dev.crt"
        assert cert.exists()
        m = imaplib.IMAP4("127.0.0.1", imap)
        assert "LOGINDISABLED" in m.capabilities
        m.starttls(ssl_context=client_context(cert))
        deadline = time.monotonic() + 30
        while True:  # the demo user is created right after the front ends start
            try:
                m.login("demo", "demo")
                break
            except imaplib.IMAP4.error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert m.select("INBOX")[0] == "OK"
        m.logout()
        s = imaplib.IMAP4_SSL("127.0.0.1", imaps, ssl_context=client_context(cert))
        s.login("demo", "demo")
        s.logout()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_worker_processes_share_the_port_and_drain_together(imap_stack: ImapStack) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "mailha.cli", "imapd", "serve", "--store", imap_stack.store.address]
    argv += ["--epoch", str(imap_stack.epoch), "--listen", f"127.0.0.1:{port}", "--allow-plaintext-login"]
    argv += ["--workers", "2"]
    log = imap_stack.cert.parent.parent / "imapd-workers.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_port(port, process, log)
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
        for sock in socks:
            assert _read_until(sock, b"\r\n").startswith(b"* OK")
        process.send_signal(signal.SIGTERM)
        for sock in socks:
            assert b"server moving, reconnect" in _read_until(sock, b"reconnect")
            sock.close()
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
