"""A small APPEND from imaplib against a real store + imapd must not wait for a delayed ACK.

imaplib writes the literal and the final CRLF in two sends with Nagle on: the
CRLF waits until the literal is acknowledged. A server that answers nothing
before the CRLF and leaves the ACK to Linux's delayed-ACK timer made every
such APPEND take ~40-48 ms (issue 13); the server now acknowledges each read
at once (imapd/server.py `Connection.ack_now`).
"""

from __future__ import annotations

import imaplib
import os
import pathlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator

import pytest

from bench.imap_spawn import SpawnedStack
from store.client import StoreClient

# 200 bytes, like a short note.
_MESSAGE = (b"From: a@mailha.test\r\nTo: b@mailha.test\r\nSubject: short\r\n\r\n" + b"x" * 200)[:200]
# Far below the ~40 ms delayed-ACK stall, generous for a loaded 2-core CI box.
_P50_LIMIT_S = 0.015


@pytest.fixture
def stack() -> Iterator[SpawnedStack]:
    # A short directory: the store's unix socket path must stay under 108 bytes.
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="mhl-", dir="/tmp"))
    spawned = SpawnedStack(directory=scratch / "stack")
    os.makedirs(spawned.directory)
    try:
        spawned.start()
        with StoreClient(spawned.store_address) as client:
            client.create_user("ann", "ann-secret")
        yield spawned
    finally:
        spawned.stop()
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.integration
def test_imaplib_append_of_200_bytes_is_not_stalled_by_delayed_ack(stack: SpawnedStack) -> None:
    client = imaplib.IMAP4("127.0.0.1", stack.port)
    try:
        client.login("ann", "ann-secret")
        client.select("INBOX")
        timings = []
        for _ in range(50):
            start = time.perf_counter()
            typ, data = client.append("INBOX", None, None, _MESSAGE)
            timings.append(time.perf_counter() - start)
            assert typ == "OK", data
        assert client.select("INBOX") == ("OK", [b"50"])
    finally:
        client.logout()
    p50 = statistics.median(timings)
    assert p50 <= _P50_LIMIT_S, f"APPEND of 200 bytes p50 {p50 * 1000:.1f} ms (delayed-ACK stall is ~40 ms)"
