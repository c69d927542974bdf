"""The store over gRPC, against a running `mailha store serve` process."""

from __future__ import annotations

import os
import pathlib
import stat
import subprocess
import sys
import threading
import time
from typing import cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from mailha_api import store_pb2
from store.client import AppendStream, stream_message
from store.listen import ListenAddressError, parse_listen
from tests.store_fixtures import StoreServer, rpc_status

pytestmark = pytest.mark.integration
MSG = b"From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n"


def _code(call: object) -> tuple[grpc.StatusCode, str]:
    assert callable(call)
    with pytest.raises(grpc.RpcError) as info:
        call()
    return rpc_status(info.value)


def test_health_no_reflection_and_socket_mode(store_server: StoreServer) -> None:
    assert stat.S_IMODE(os.stat(store_server.socket_path).st_mode) == 0o600
    with store_server.client() as c:
        health = health_pb2_grpc.HealthStub(c.channel)
        reply = health.Check(health_pb2.HealthCheckRequest(service="mailha.store.v1.MailStore"), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(c.channel)
        request = iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        code, _ = _code(lambda: list(refl.ServerReflectionInfo(request)))
        assert code == grpc.StatusCode.UNIMPLEMENTED  # off unless `--reflection`
    assert store_server.stop() == 0  # SIGTERM is a graceful stop


def test_listen_addresses_are_loopback_or_unix_only(tmp_path: pathlib.Path) -> None:
    assert parse_listen("127.0.0.1:7070").grpc_target == "127.0.0.1:7070"
    assert parse_listen("[::1]:7070").unix_path is None
    assert parse_listen(f"unix:{tmp_path}/s.sock").unix_path == tmp_path / "s.sock"
    for bad in ("192.0.2.10:7070", "0.0.0.0:7070", "unix:relative.sock", "example.org:1", "127.0.0.1"):
        with pytest.raises(ListenAddressError):
            parse_listen(bad)
    argv = [
        sys.executable,
        "-m",
        "mailha.cli",
        "store",
        "serve",
        "--data",
        str(tmp_path / "d"),
        "--listen",
        "0.0.0.0:7070",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "loopback" in done.stderr


def test_errors_map_to_documented_status_codes(store_server: StoreServer) -> None:
    with store_server.client() as c:
        c.create_user("alice", "pw")
        stub = c.stub
        code, text = _code(lambda: c.create_user("alice", "pw"))
        assert code == grpc.StatusCode.ALREADY_EXISTS
        code, text = _code(
            lambda: stub.CreateMailbox(store_pb2.CreateMailboxRequest(epoch=1, user="alice", name="a//b"))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "empty hierarchy" in text
        code, _ = _code(lambda: c.append_bytes("nobody", "INBOX", MSG))
        assert code == grpc.StatusCode.NOT_FOUND
        code, text = _code(lambda: c.authenticate("alice", "wrong"))
        assert (
            code == grpc.StatusCode.UNAUTHENTICATED and text == "authentication failed: unknown user or wrong password"
        )
        code, text = _code(lambda: c.append_bytes("alice", "INBOX", MSG, epoch=0))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and text.startswith("fenced:")
        mid = c.mailbox_id("alice", "INBOX")
        code, text = _code(lambda: c.fetch_meta("alice", mid, "1:*:2"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "malformed" in text
        big = store_pb2.AppendHeader(epoch=1, user="alice", mailbox="INBOX", size=21 * 1024 * 1024)
        code, text = _code(lambda: stub.Append(iter([store_pb2.AppendRequest(header=big, data=b"x", last=True)])))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and text.startswith("size:")
        stub.SetQuota(store_pb2.SetQuotaRequest(epoch=1, user="alice", limit_bytes=10))
        code, text = _code(lambda: c.append_bytes("alice", "INBOX", MSG))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and text.startswith("quota:")
        stub.SetWritable(store_pb2.SetWritableRequest(epoch=1, writable=False))
        code, _ = _code(lambda: stub.SetQuota(store_pb2.SetQuotaRequest(epoch=1, user="alice", limit_bytes=0)))
        assert code == grpc.StatusCode.UNAVAILABLE
        stub.SetWritable(store_pb2.SetWritableRequest(epoch=1, writable=True))
        assert c.select("alice", "INBOX").mailbox.status.messages == 0


def test_streamed_multi_and_pipelined_appends(store_server: StoreServer) -> None:
    with store_server.client() as c:
        c.create_user("alice", "pw")
        mid = c.mailbox_id("alice", "INBOX")
        big = MSG + os.urandom(3 * 1024 * 1024)
        reply = c.append_bytes("alice", "INBOX", big, ["\\Seen"])  # streamed in 256 KiB pieces
        assert c.fetch_body("alice", mid, reply.uid) == big
        # MultiAppend is all or nothing: an oversized part refuses the lot.
        header = store_pb2.AppendHeader(epoch=1, user="alice", mailbox="INBOX")
        parts = [*stream_message(header, MSG), *stream_message(header, MSG + b"2")]
        multi = c.stub.MultiAppend(iter(parts))
        assert list(multi.uids) == [2, 3]
        huge = store_pb2.AppendHeader(epoch=1, user="alice", mailbox="INBOX", size=10**9)
        bad = [*stream_message(header, MSG), *stream_message(huge, MSG)]
        code, _ = _code(lambda: c.stub.MultiAppend(iter(bad)))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert list(c.select("alice", "INBOX").uids) == [1, 2, 3]
        # A pipeline keeps many appends in flight; replies come in order; a bad one fails alone.
        stream = AppendStream(c)
        header.mailbox_id = mid
        for n in range(20):
            stream.send(header, MSG + str(n).encode())
        stream.send(store_pb2.AppendHeader(epoch=1, user="alice", mailbox_id=mid, flags=["\\Bogus"]), MSG)
        stream.send(header, MSG)
        replies = [stream.receive() for _ in range(22)]
        stream.close()
        assert [r.uid for r in replies[:20]] == list(range(4, 24))
        assert (
            replies[20].error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "Bogus" in replies[20].error_message
        )
        assert replies[21].uid == 24


def test_watch_reports_a_new_message_fast(store_server: StoreServer) -> None:
    with store_server.client() as c:
        c.create_user("alice", "pw")
        mid = c.mailbox_id("alice", "INBOX")
        call = c.stub.Watch(store_pb2.WatchRequest(user="alice", mailbox_id=mid, since_modseq=1))
        events = iter(call)
        first = next(events)  # the catch-up event: subscribed from here on
        assert first.modseq == c.select("alice", "INBOX").mailbox.status.highestmodseq
        seen: list[float] = []

        def read() -> None:
            for event in events:
                if event.added:
                    seen.append(time.perf_counter())
                    return

        t = threading.Thread(target=read)
        t.start()
        c.append_bytes("alice", "INBOX", MSG)
        acked = time.perf_counter()
        t.join(5)
        assert seen, "no event for the new message"
        assert seen[0] - acked < 0.1, "event arrived more than 100 ms after the append was acknowledged"
        cast("grpc.Future[store_pb2.ChangeEvent]", call).cancel()  # a streaming call is also a Future
        # Deleting the mailbox ends other streams with a `deleted` event.
        c.stub.CreateMailbox(store_pb2.CreateMailboxRequest(epoch=1, user="alice", name="Tmp"))
        tmp = c.mailbox_id("alice", "Tmp")
        stream = iter(c.stub.Watch(store_pb2.WatchRequest(user="alice", mailbox_id=tmp, since_modseq=1)))
        next(stream)
        c.stub.DeleteMailbox(store_pb2.DeleteMailboxRequest(epoch=1, user="alice", name="Tmp"))
        assert [e.deleted for e in stream] == [True]


def test_read_only_start_until_set_writable(tmp_path: pathlib.Path) -> None:
    server = StoreServer(tmp_path / "store", tmp_path / "ro.sock", extra_args=("--fence", "7", "--read-only-start"))
    server.start()
    try:
        with server.client() as c:
            reply = c.stub.GetEpoch(store_pb2.GetEpochRequest())
            assert (reply.epoch, reply.writable) == (7, False)
            code, text = _code(lambda: c.create_user("alice", "pw", epoch=7))
            assert code == grpc.StatusCode.UNAVAILABLE and "suspended" in text
            code, _ = _code(lambda: c.stub.SetWritable(store_pb2.SetWritableRequest(epoch=6, writable=True)))
            assert code == grpc.StatusCode.FAILED_PRECONDITION
            assert c.stub.SetWritable(store_pb2.SetWritableRequest(epoch=7, writable=True)).writable
            assert c.create_user("alice", "pw", epoch=7).name == "alice"
    finally:
        server.stop()


def test_many_open_watch_streams_do_not_starve_other_calls(store_server: StoreServer) -> None:
    with store_server.client() as c:
        c.create_user("alice", "pw")
        mid = c.mailbox_id("alice", "INBOX")
        calls = [c.stub.Watch(store_pb2.WatchRequest(user="alice", mailbox_id=mid, since_modseq=1)) for _ in range(600)]
        try:
            for call in calls:  # each stream is established (and holds a server thread) once its catch-up arrives
                assert next(iter(call)).mailbox_id == mid
            t0 = time.perf_counter()
            assert c.append_bytes("alice", "INBOX", MSG).uid == 1
            assert time.perf_counter() - t0 < 5
        finally:
            for call in calls:
                cast("grpc.Future[store_pb2.ChangeEvent]", call).cancel()
