"""The store gives memory back after large writes (issue 17): after a STORE over every message
of a mailbox, a COPY of them all and an EXPUNGE of the copies, its RssAnon returns within 20%
of idle, as `mailha bench mailbox` checks at 50,000 messages (its worst case: the marking
STORE 1:* in pieces of 10,000, STORE 1:* +FLAGS, COPY and EXPUNGE of 1,000).

Two causes, both needed for the bound. LMDB keeps the dirty pages of its largest write
transaction on a list of its own until the environment closes, so the old store held 4 KiB
for every page its largest transaction wrote, for good (here the COPY of 16,000: 1,793
pages); the store now reopens the environment when quiet (store/committer.py, "Reopening").
And pymalloc and glibc kept several MB more after the writes with ~11 KB of Python objects
alive; the store now runs on jemalloc as imapd does (nodeconf/services.py), started here as
standalone mode and the HA agent start it. Measured with this test: old store on pymalloc
34.3 -> 44.2 MB (6,000 messages), old store on jemalloc 36.9 -> 45.8 MB (1.24x), both fixes
37.7 -> 39.1 MB (1.04x). A reader beside the store (imapd's LocalReader, here in the test
process) reads on through the reopen.

MAILHA_STORE_MEMORY_TEST_MESSAGES messages (default 16,000: ~15-35 s on the 2-core machine).
"""

from __future__ import annotations

import os
import pathlib
import time

import grpc

from bench.proc_status import status_kib
from mailha_api import store_pb2, store_pb2_grpc
from nodeconf.services import ALLOCATOR_ENV, service_env
from store.reader import LocalReader
from tests.store_fixtures import StoreServer

MESSAGES = int(os.environ.get("MAILHA_STORE_MEMORY_TEST_MESSAGES", "16000"))
SETTLE = 12.0  # seconds at most for the quiet store to reopen LMDB (after a 1 s idle tick) and trim


def _message(n: int) -> bytes:
    return (
        f"From: s{n}@example.org\r\nTo: r@example.org\r\nSubject: message {n}\r\n"
        f"Message-ID: <{n}@example.org>\r\n\r\nbody {n} " + "x" * (n % 200) + "\r\n"
    ).encode()


def _settled(pid: int, bound: float, timeout: float = SETTLE) -> int:
    """RssAnon once at or below `bound`, or what it is when `timeout` has passed."""
    deadline = time.monotonic() + timeout
    while True:
        now = status_kib(pid, "RssAnon")
        if now <= bound or time.monotonic() >= deadline:
            return now
        time.sleep(0.5)


def test_store_rss_returns_near_idle_after_large_writes(tmp_path: pathlib.Path) -> None:
    store = StoreServer(
        tmp_path / "store",
        tmp_path / "store.sock",
        extra_args=("--fence-next", "--no-fulltext"),
        env=service_env("store"),  # as standalone mode and the HA agent start it: on jemalloc
    )
    store.start()
    reader: LocalReader | None = None
    try:
        assert store.process is not None
        pid = store.process.pid
        assert ALLOCATOR_ENV, "libjemalloc2 is not installed (scripts/bootstrap.sh installs it)"
        assert "libjemalloc" in pathlib.Path(f"/proc/{pid}/maps").read_text()
        with grpc.insecure_channel(store.address) as channel:
            stub = store_pb2_grpc.MailStoreStub(channel)
            epoch = int(stub.GetEpoch(store_pb2.GetEpochRequest()).epoch)
            stub.CreateUser(store_pb2.CreateUserRequest(epoch=epoch, name="mem", password="mem-pw"))
            for start in range(0, MESSAGES, 500):
                requests = []
                for n in range(start, min(MESSAGES, start + 500)):
                    data = _message(n)
                    header = store_pb2.AppendHeader(epoch=epoch, user="mem", mailbox="INBOX", size=len(data))
                    requests.append(store_pb2.AppendRequest(header=header, data=data, last=True))
                stub.MultiAppend(iter(requests))
            stub.CreateMailbox(store_pb2.CreateMailboxRequest(epoch=epoch, user="mem", name="Copy"))
            mid = int(stub.Status(store_pb2.StatusRequest(user="mem", name="INBOX")).mailbox_id)
            copy_mid = int(stub.Status(store_pb2.StatusRequest(user="mem", name="Copy")).mailbox_id)

            def mark(mailbox_id: int, uid_set: str, flag: str) -> None:
                req = store_pb2.StoreFlagsRequest(
                    epoch=epoch, user="mem", mailbox_id=mailbox_id, uid_set=uid_set, flags=[flag]
                )
                req.mode = store_pb2.FLAG_MODE_ADD
                stub.StoreFlags(req)

            def commands(uid_set: str) -> None:
                """What the benchmark's large commands do to the store, over `uid_set`."""
                mark(mid, uid_set, "\\Seen")
                stub.Copy(
                    store_pb2.CopyRequest(epoch=epoch, user="mem", mailbox_id=mid, uid_set=uid_set, dest_mailbox="Copy")
                )
                mark(copy_mid, "1:*", "\\Deleted")
                stub.Expunge(store_pb2.ExpungeRequest(epoch=epoch, user="mem", mailbox_id=copy_mid, uid_set=""))
                list(stub.Fetch(store_pb2.FetchRequest(user="mem", mailbox_id=mid, uid_set=uid_set)))

            # Idle: every command served once on a few messages (code paths loaded, gRPC set
            # up), then quiet: the fill's own transactions are given back like any other.
            commands("1:20")
            time.sleep(4)
            idle = status_kib(pid, "RssAnon")
            reader = LocalReader(tmp_path / "store")
            assert reader.status("mem", "Copy").status.messages == 0
            commands("1:*")
            busy = status_kib(pid, "RssAnon")
            after = _settled(pid, idle * 1.2)
        assert after <= idle * 1.2, (
            f"store RssAnon {idle} KiB idle, {busy} KiB after the writes, {after} KiB {SETTLE:.0f} s later"
        )
        # The reader beside the store read on through the reopen; its view is the store's.
        inbox, copied = reader.status("mem", "INBOX").status, reader.status("mem", "Copy").status
        assert (inbox.messages, inbox.unseen) == (MESSAGES, 0)
        assert (copied.messages, copied.uidnext) == (0, 20 + MESSAGES + 1)
        assert "reopened the LMDB environment" in store.log_path.read_text()
    finally:
        if reader is not None:
            reader.close()
        store.stop()
