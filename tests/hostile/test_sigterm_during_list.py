"""Issue 9.1, second half: while one LIST backtracked, imapd ignored SIGTERM and
outlived its parent's stop. A real imapd process, busy with pipelined LISTs of
the issue's pattern, now drains and exits on SIGTERM within seconds."""

from __future__ import annotations

import imaplib
import signal
import socket
import subprocess
import time

import pytest

from tests.hostile.test_list_pattern import EVIL_PATTERN
from tests.imap_clients_stack import USERS, ImapStack, imap_stack

pytestmark = pytest.mark.integration
__all__ = ["imap_stack"]


def test_busy_imapd_exits_on_sigterm(imap_stack: ImapStack) -> None:
    ctx = imap_stack.ssl_context()
    setup = imaplib.IMAP4_SSL("127.0.0.1", imap_stack.tls_port, ssl_context=ctx)
    setup.login("alice", USERS["alice"])
    for i in range(30):
        assert setup.create("a" * 190 + f"{i:02d}")[0] == "OK"
    setup.logout()

    raw = socket.create_connection(("127.0.0.1", imap_stack.tls_port))
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    tls.settimeout(10)
    tls.recv(4096)  # greeting
    tls.sendall(f'l LOGIN alice "{USERS["alice"]}"\r\n'.encode())
    reply = b""
    while b"l OK" not in reply:
        reply += tls.recv(4096)
    # Enough work for several seconds: the server is busy when SIGTERM comes.
    tls.sendall(b"".join(b'x%d LIST "" "%s"\r\n' % (i, EVIL_PATTERN.encode()) for i in range(3000)))
    time.sleep(0.5)
    started = time.monotonic()
    imap_stack.process.send_signal(signal.SIGTERM)
    try:
        code = imap_stack.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("imapd ignored SIGTERM while serving LISTs")
    took = time.monotonic() - started
    tls.close()
    assert code == 0
    assert took < 5.0, took
