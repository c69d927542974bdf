"""Issue 9 item 9: a flood of failed logins must not leave the store's memory behind.

Each password hash takes 19 MiB (argon2id); the store hashes at most a few at
once (the rest wait briefly, then get UNAVAILABLE) and gives the memory back
to the system afterwards (fixed mmap threshold, few malloc arenas, trim).
"""

from __future__ import annotations

import pathlib
import threading
import time
from typing import cast

import grpc
import pytest

from bench.proc_status import status_kib
from mailha_api import store_pb2
from tests.store_fixtures import StoreServer

FLOOD_THREADS = 48
FLOOD_SECONDS = 10.0


def rss_mib(pid: int) -> float:
    return status_kib(pid) / 1024


def thread_count(pid: int) -> int:
    return len(list(pathlib.Path(f"/proc/{pid}/task").iterdir()))


def flood_failed_logins(address: str, seconds: float, threads: int) -> dict[str, int]:
    """Wrong-password Authenticate calls from `threads` callers for `seconds`; counts by status."""
    counts: dict[str, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def caller(n: int) -> None:
        with grpc.insecure_channel(address) as channel:
            call = channel.unary_unary(
                "/mailha.store.v1.MailStore/Authenticate",
                request_serializer=store_pb2.AuthenticateRequest.SerializeToString,
                response_deserializer=store_pb2.AuthenticateReply.FromString,
            )
            while time.monotonic() < deadline:
                try:
                    call(
                        store_pb2.AuthenticateRequest(name="victim", password=f"guess-{n}-{time.monotonic()}"),
                        timeout=10,
                    )
                    code = "OK"
                except grpc.RpcError as exc:
                    code = exc.code().name
                with lock:
                    counts[code] = counts.get(code, 0) + 1

    workers = [threading.Thread(target=caller, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=seconds + 30)
    return counts


@pytest.mark.slow
def test_store_rss_returns_near_idle_after_failed_login_flood(store_server: StoreServer) -> None:
    assert store_server.process is not None
    pid = store_server.process.pid
    with store_server.client() as client:
        client.create_user("victim", "the real one")
        assert client.authenticate("victim", "the real one") == "victim"
    time.sleep(1.0)
    idle = rss_mib(pid)

    peak = 0.0
    counts: dict[str, int] = {}
    for _ in range(2):  # two floods, as in the report
        done = threading.Event()

        def sample(done: threading.Event = done) -> None:
            nonlocal peak
            while not done.wait(0.2):
                peak = max(peak, rss_mib(pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        for code, n in flood_failed_logins(store_server.address, FLOOD_SECONDS, FLOOD_THREADS).items():
            counts[code] = counts.get(code, 0) + n
        done.set()
        sampler.join()

    assert counts.get("UNAUTHENTICATED", 0) > 0, counts
    assert "OK" not in counts and set(counts) <= {"UNAUTHENTICATED", "UNAVAILABLE"}, counts
    time.sleep(3.0)  # the store trims its heap once hashing has been idle for a moment
    after = rss_mib(pid)
    threads = thread_count(pid)
    print(f"store RSS idle {idle:.1f} MiB, peak {peak:.1f} MiB, after {after:.1f} MiB; {threads} threads; {counts}")
    assert after <= 2 * idle, f"RSS {after:.1f} MiB after the flood, idle was {idle:.1f} MiB (peak {peak:.1f})"
    with store_server.client() as client:  # and it still works
        assert client.authenticate("victim", "the real one") == "victim"


def test_worker_threads_are_bounded_and_excess_calls_refused_quickly(tmp_path: pathlib.Path) -> None:
    server = StoreServer(tmp_path / "store", tmp_path / "s.sock", extra_args=("--fence-next", "--workers", "8"))
    server.start()
    assert server.process is not None
    try:
        with server.client() as c:
            c.create_user("alice", "pw")
            mid = c.mailbox_id("alice", "INBOX")
            idle_threads = thread_count(server.process.pid)
            calls = [
                c.stub.Watch(store_pb2.WatchRequest(user="alice", mailbox_id=mid, since_modseq=1)) for _ in range(8)
            ]
            try:
                for call in calls:  # each stream now holds one of the 8 workers
                    assert next(iter(call)).mailbox_id == mid
                t0 = time.perf_counter()
                with pytest.raises(grpc.RpcError) as info:
                    c.stub.GetEpoch(store_pb2.GetEpochRequest(), timeout=10)
                assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.perf_counter() - t0 < 2  # refused, not queued until the deadline
                assert thread_count(server.process.pid) <= idle_threads + 8
            finally:
                for call in calls:
                    cast("grpc.Future[store_pb2.ChangeEvent]", call).cancel()
            time.sleep(0.5)
            assert c.stub.GetEpoch(store_pb2.GetEpochRequest(), timeout=10).epoch == 1
    finally:
        server.stop()
