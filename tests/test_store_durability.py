"""Crash safety, fencing across processes, and memory use of big appends."""

from __future__ import annotations

import os
import pathlib
import threading
import time

import grpc
import pytest

from bench.proc_status import status_kib
from mailha_api import store_pb2
from store.client import StoreClient
from tests.store_fixtures import StoreServer, rpc_status

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


def _token_of(header: bytes) -> str:
    for line in header.split(b"\r\n"):
        if line.startswith(b"X-Token: "):
            return line[len(b"X-Token: ") :].decode()
    raise AssertionError(f"no token in {header!r}")


def test_kill9_during_concurrent_appends_loses_no_acknowledged_message(tmp_path: pathlib.Path) -> None:
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock")
    server.start()
    with server.client() as c:
        c.create_user("alice", "pw")
        uidvalidity = c.select("alice", "INBOX").mailbox.status.uidvalidity
    acked: dict[str, int] = {}  # token -> uid
    attempted: set[str] = set()
    lock = threading.Lock()
    try:
        for round_no in range(5):
            if round_no:
                server.start()  # --fence-next: a new epoch each start, like standalone mode
            with server.client() as c:
                epoch = c.epoch()
            stop = threading.Event()

            def writer(n: int, stop: threading.Event = stop, epoch: int = epoch, round_no: int = round_no) -> None:
                with StoreClient(server.address, timeout=10) as client:
                    seq = 0
                    while not stop.is_set():
                        token = f"r{round_no}-w{n}-{seq}"
                        seq += 1
                        with lock:
                            attempted.add(token)
                        data = f"X-Token: {token}\r\nSubject: crash\r\n\r\n{token}\r\n".encode()
                        try:
                            reply = client.append_bytes("alice", "INBOX", data, epoch=epoch)
                        except grpc.RpcError:
                            return  # the server died under us: this append is unacknowledged
                        with lock:
                            acked[token] = reply.uid

            threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
            for t in threads:
                t.start()
            time.sleep(0.6 + 0.15 * round_no)
            server.kill9()
            stop.set()
            for t in threads:
                t.join(15)
        server.start()
        with server.client() as c:
            sel = c.select("alice", "INBOX")
            mid = sel.mailbox.mailbox_id
            req = store_pb2.FetchRequest(user="alice", mailbox_id=mid, uid_set="1:*", with_header=True)
            stored = [(r.meta.uid, _token_of(r.meta.header)) for r in c.stub.Fetch(req)]
    finally:
        server.stop()
    uids = [u for u, _ in stored]
    tokens = [t for _, t in stored]
    assert len(acked) > 100, f"too few appends were acknowledged ({len(acked)}) for the test to mean much"
    assert uids == sorted(set(uids)), "UIDs must be strictly increasing"
    assert len(tokens) == len(set(tokens)), "a message is present more than once"
    assert set(tokens) <= attempted
    by_token = dict((t, u) for u, t in stored)
    missing = [t for t in acked if t not in by_token]
    assert not missing, f"acknowledged appends lost after kill -9: {missing[:5]}"
    assert all(by_token[t] == u for t, u in acked.items()), "an acknowledged UID now holds another message"
    assert sel.mailbox.status.uidvalidity == uidvalidity
    assert sel.mailbox.status.messages == len(stored)


def test_stale_epoch_writer_is_refused_by_the_shared_environment(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "shared"
    old = StoreServer(data, tmp_path / "old.sock", extra_args=("--fence", "1")).start()
    new = StoreServer(data, tmp_path / "new.sock", extra_args=())
    try:
        with old.client() as a:
            a.create_user("alice", "pw", epoch=1)
            a.append_bytes("alice", "INBOX", b"Subject: before\r\n\r\nx", epoch=1)
            new.extra_args = ("--fence", "2")
            new.start()
            with new.client() as b:
                assert b.epoch() == 2 and a.epoch() == 2  # one LMDB environment, seen by both
                before = b.select("alice", "INBOX")
                for call in (
                    lambda: a.append_bytes("alice", "INBOX", b"Subject: late\r\n\r\nx", epoch=1),
                    lambda: a.stub.CreateMailbox(store_pb2.CreateMailboxRequest(epoch=1, user="alice", name="X")),
                    lambda: a.stub.SetQuota(store_pb2.SetQuotaRequest(epoch=1, user="alice", limit_bytes=1)),
                    lambda: a.create_user("mallory", "pw", epoch=1),
                    lambda: a.fence(1),
                ):
                    with pytest.raises(grpc.RpcError) as info:
                        call()
                    code, details = rpc_status(info.value)
                    assert code == grpc.StatusCode.FAILED_PRECONDITION and "fenced" in details
                assert b.select("alice", "INBOX") == before
                assert [u.name for u in b.stub.ListUsers(store_pb2.ListUsersRequest()).users] == ["alice"]
                assert b.stub.GetQuota(store_pb2.GetQuotaRequest(user="alice")).limit_bytes == 0
                assert b.append_bytes("alice", "INBOX", b"Subject: new\r\n\r\nx", epoch=2).uid == 2
                assert list(a.select("alice", "INBOX").uids) == [1, 2]
    finally:
        new.stop()
        old.stop()


def test_20mib_append_streams_without_ballooning_memory(store_server: StoreServer) -> None:
    assert store_server.process is not None
    pid = store_server.process.pid
    size = 20 * MIB
    with store_server.client() as c:
        c.create_user("alice", "pw")
        mid = c.mailbox_id("alice", "INBOX")
        c.append_bytes("alice", "INBOX", b"Subject: warm\r\n\r\n" + b"x" * (2 * MIB))  # warm up every code path
        data = b"Subject: big\r\n\r\n" + os.urandom(size - 16)
        baseline = status_kib(pid, "VmRSS")
        pathlib.Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak (VmHWM) to now
        t0 = time.perf_counter()
        reply = c.append_bytes("alice", "INBOX", data)
        elapsed = time.perf_counter() - t0
        peak = status_kib(pid, "VmHWM")
        added = (peak - baseline) * 1024
        assert added < 3 * size, f"peak RSS grew by {added / MIB:.1f} MiB for a {size / MIB:.0f} MiB message"
        assert c.fetch_body("alice", mid, reply.uid) == data
        assert not any((store_server.data_dir / "spool").iterdir()), "spool file left behind"
    print(f"20 MiB append: {elapsed:.2f} s, added peak RSS {added / MIB:.1f} MiB")
