"""imapd and the store give memory back: after large FETCH/SEARCH sessions close, their RSS is
within 20% of idle (the store's idle measured once its full-text indexer has caught up).

Also the ENVELOPE cache, the one cache kept across sessions, is bounded in bytes.
"""

from __future__ import annotations

import contextlib
import imaplib
import pathlib
import sqlite3
import subprocess
import sys
import threading
import time

import grpc

from imapd.protocol.values import Raw
from imapd.session.envelope_cache import EnvelopeCache
from mailha_api import store_pb2, store_pb2_grpc
from tests.imap_clients_stack import free_port, wait_port
from tests.store_fixtures import ROOT, StoreServer

MESSAGES = 8000


def _rss_anon_kib(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError("no RssAnon")


def _message(n: int) -> bytes:
    words = " ".join(f"word{(n * 7 + i) % 997}" for i in range(60))
    return (
        f"From: Sender {n} <s{n}@example.org>\r\nTo: r@example.org\r\nSubject: subject {n} {words[:60]}\r\n"
        f"Message-ID: <{n}@example.org>\r\n\r\n" + (words + "\r\n") * 20
    ).encode()


def _wait_indexed(path: pathlib.Path, uid: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            try:
                if conn.execute("SELECT max(uid) FROM watermarks").fetchone()[0] == uid:
                    return
            except sqlite3.OperationalError:  # not created yet
                pass
        assert time.monotonic() < deadline, "the store's full-text indexer did not catch up"
        time.sleep(0.2)


def test_envelope_cache_is_bounded_in_bytes() -> None:
    cache = EnvelopeCache(max_entries=1000, max_bytes=10_000)
    for uid in range(100):
        cache.put(("u", 1, uid), Raw(b"x" * 300))
    assert cache.bytes <= 10_000 and 15 <= len(cache) <= 20
    assert cache.get(("u", 1, 99)) is not None and cache.get(("u", 1, 0)) is None


def test_imapd_rss_returns_near_idle_after_large_sessions_close(tmp_path: pathlib.Path) -> None:
    store = StoreServer(tmp_path / "store", tmp_path / "store.sock").start()
    imapd: subprocess.Popen[bytes] | None = None
    try:
        with grpc.insecure_channel(store.address) as channel:
            stub = store_pb2_grpc.MailStoreStub(channel)
            epoch = int(stub.GetEpoch(store_pb2.GetEpochRequest()).epoch)
            stub.CreateUser(store_pb2.CreateUserRequest(epoch=epoch, name="mem", password="mem-pw"))
            for start in range(0, MESSAGES, 500):
                requests = []
                for n in range(start, start + 500):
                    data = _message(n)
                    header = store_pb2.AppendHeader(epoch=epoch, user="mem", mailbox="INBOX", size=len(data))
                    requests.append(store_pb2.AppendRequest(header=header, data=data, last=True))
                stub.MultiAppend(iter(requests))
        port = free_port()
        argv = [sys.executable, "-m", "mailha.cli", "imapd", "serve", "--store", store.address, "--epoch", str(epoch)]
        argv += ["--listen", f"127.0.0.1:{port}", "--allow-plaintext-login", "--envelope-cache-mb", "1"]
        log = tmp_path / "imapd.log"
        with open(log, "ab") as out:
            imapd = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        wait_port(port, imapd, log)

        def session(heavy: bool) -> None:
            imap = imaplib.IMAP4("127.0.0.1", port)
            imap.login("mem", "mem-pw")
            imap.select("INBOX")
            if heavy:
                imap.fetch("1:*", "(ENVELOPE)")
                imap.uid("FETCH", "1:*", "(FLAGS RFC822.SIZE)")
                imap.uid("SEARCH", "SUBJECT", "word5")
                imap.uid("SEARCH", "BODY", "word99")
                imap.fetch("1:500", "(BODY.PEEK[])")
            imap.logout()

        session(heavy=False)  # warm: code paths imported, one session served
        _wait_indexed(tmp_path / "store" / "fulltext.sqlite", MESSAGES)  # the store's indexer is done
        session(heavy=False)
        time.sleep(6)  # past the release interval
        idle = _rss_anon_kib(imapd.pid)
        assert store.process is not None
        store_idle = _rss_anon_kib(store.process.pid)
        threads = [threading.Thread(target=session, args=(True,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        time.sleep(1)
        after = _rss_anon_kib(imapd.pid)
        store_after = _rss_anon_kib(store.process.pid)
        assert after <= idle * 1.2, f"imapd RssAnon {idle} KiB idle, {after} KiB after the sessions closed"
        assert store_after <= store_idle * 1.2, f"store RssAnon {store_idle} KiB idle, {store_after} KiB after"
    finally:
        if imapd is not None:
            imapd.terminate()
            imapd.wait(15)
        store.stop()
