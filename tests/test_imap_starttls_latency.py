"""STARTTLS from imaplib against a real imapd must not wait for a delayed ACK.

imaplib keeps Nagle on. After the TLS handshake its next command (the
CAPABILITY imaplib asks for at once, then LOGIN) waits until the client's
last handshake flight is acknowledged; the server, having read that flight,
had nothing to send, so Linux acknowledged it only when its delayed-ACK timer
ran out: every STARTTLS session setup took ~40 ms more than Dovecot's (0.4 ms
for that CAPABILITY), and so did every client's reconnect in an HA switchover
(haagent/AGENT.md, "Measured"). The server now acknowledges at once after the
handshake (imapd/server.py `Connection.upgrade_tls`).
"""

from __future__ import annotations

import imaplib
import statistics
import time

import pytest

from tests.imap_clients_stack import USERS, ImapStack, imap_stack

__all__ = ["imap_stack"]  # the fixture, used by name

# Far below the ~40 ms delayed-ACK stall, generous for a loaded 2-core CI box.
_P50_LIMIT_S = 0.015


@pytest.mark.integration
def test_imaplib_starttls_is_not_stalled_by_delayed_ack(imap_stack: ImapStack) -> None:
    context = imap_stack.ssl_context()  # made once: loading it is the client's cost, not the server's
    timings = []
    for _ in range(20):
        client = imaplib.IMAP4("127.0.0.1", imap_stack.port)
        try:
            start = time.perf_counter()
            typ, data = client.starttls(ssl_context=context)  # STARTTLS, the handshake, CAPABILITY
            timings.append(time.perf_counter() - start)
            assert typ == "OK", data
            assert client.login("alice", USERS["alice"])[0] == "OK"
        finally:
            client.logout()
    p50 = statistics.median(timings)
    assert p50 <= _P50_LIMIT_S, f"STARTTLS + CAPABILITY p50 {p50 * 1000:.1f} ms (delayed-ACK stall is ~40 ms)"
