"""The Writes stream (store/write_stream.py, store/write_stream_client.py) against a real store:
replies matched by id, a failed write answered alone, the epoch checked per write, appends
acknowledged on the stream surviving kill -9, and imapd's fallback to unary calls on a
store without the stream."""

from __future__ import annotations

import pathlib
import queue
import threading
import time
from concurrent import futures
from typing import Any

import grpc
import pytest
import trio

from imapd.errors import StoreErrorKind
from imapd.store_client import FlagMode
from imapd.store_grpc import GrpcStore
from mailha_api import store_pb2, store_pb2_grpc
from store.channel import open_channel
from store.write_stream_client import Outcome, StreamEnded, WriteStream
from tests.store_fixtures import StoreServer

pytestmark = pytest.mark.integration


def _append(epoch: int, user: str, text: bytes, mailbox: str = "INBOX") -> store_pb2.WriteRequest:
    header = store_pb2.AppendHeader(epoch=epoch, user=user, mailbox=mailbox, size=len(text))
    return store_pb2.WriteRequest(append=store_pb2.AppendRequest(header=header, data=text, last=True))


class _Waiter:
    """Collects WriteStream outcomes by id."""

    def __init__(self) -> None:
        self.outcomes: queue.SimpleQueue[tuple[int, Outcome]] = queue.SimpleQueue()

    def send(self, stream: WriteStream, request: store_pb2.WriteRequest) -> int:
        box: list[int] = []
        ready = threading.Event()

        def done(outcome: Outcome) -> None:
            ready.wait(5)
            self.outcomes.put((box[0], outcome))

        box.append(stream.send(request, done))
        ready.set()
        return box[0]

    def collect(self, count: int) -> dict[int, Outcome]:
        return dict(self.outcomes.get(timeout=30) for _ in range(count))


def test_each_write_is_answered_by_its_id_and_a_failed_one_alone(store_server: StoreServer) -> None:
    with store_server.client() as c:
        c.create_user("alice", "pw")
        epoch = c.epoch()
        mid = c.mailbox_id("alice", "INBOX")
        c.stub.CreateMailbox(store_pb2.CreateMailboxRequest(epoch=epoch, user="alice", name="Saved"))
    channel = open_channel(store_server.address)
    stream = WriteStream(store_pb2_grpc.MailStoreStub(channel))
    waiter = _Waiter()
    try:
        flags = store_pb2.StoreFlagsRequest(
            epoch=epoch, user="alice", mailbox_id=mid, uid_set="1", mode=store_pb2.FLAG_MODE_ADD, flags=["\\Deleted"]
        )
        sent = {
            "first": waiter.send(stream, _append(epoch, "alice", b"Subject: one\r\n\r\n1\r\n")),
            "second": waiter.send(stream, _append(epoch, "alice", b"Subject: two\r\n\r\n2\r\n")),
            "stale epoch": waiter.send(stream, _append(epoch - 1, "alice", b"Subject: old\r\n\r\nx\r\n")),
            "bad uid set": waiter.send(
                stream,
                store_pb2.WriteRequest(
                    store_flags=store_pb2.StoreFlagsRequest(epoch=epoch, user="alice", mailbox_id=mid, uid_set="1:x")
                ),
            ),
            "no mailbox": waiter.send(stream, _append(epoch, "alice", b"Subject: lost\r\n\r\nx\r\n", "Nowhere")),
            "empty": waiter.send(stream, store_pb2.WriteRequest()),
        }
        got = waiter.collect(len(sent))
        assert sorted(got) == sorted(sent.values())
        first, second = got[sent["first"]], got[sent["second"]]
        assert isinstance(first, store_pb2.WriteReply) and isinstance(second, store_pb2.WriteReply)
        assert first.id == sent["first"] and not first.error_code
        assert {first.append.uid, second.append.uid} == {1, 2}
        for name, code, text in (
            ("stale epoch", grpc.StatusCode.FAILED_PRECONDITION, "fenced"),
            ("bad uid set", grpc.StatusCode.INVALID_ARGUMENT, ""),
            ("no mailbox", grpc.StatusCode.NOT_FOUND, ""),
            ("empty", grpc.StatusCode.INVALID_ARGUMENT, "one write"),
        ):
            reply = got[sent[name]]
            assert isinstance(reply, store_pb2.WriteReply)
            assert reply.error_code == code.value[0], (name, reply)
            assert text in reply.error_message
        # The stream goes on after the failures: every kind of write on it.
        flags_id = waiter.send(stream, store_pb2.WriteRequest(store_flags=flags))
        (flagged,) = waiter.collect(1).values()
        assert isinstance(flagged, store_pb2.WriteReply) and flagged.id == flags_id
        assert [(m.uid, list(m.flags)) for m in flagged.store_flags.updated] == [(1, ["\\Deleted"])]
        copy = store_pb2.CopyRequest(epoch=epoch, user="alice", mailbox_id=mid, uid_set="2", dest_mailbox="Saved")
        claim = store_pb2.ClaimRecentRequest(epoch=epoch, user="alice", mailbox_id=mid, up_to_uid=3)
        expunge = store_pb2.ExpungeRequest(epoch=epoch, user="alice", mailbox_id=mid)
        ids = [
            waiter.send(stream, store_pb2.WriteRequest(copy=copy)),
            waiter.send(stream, store_pb2.WriteRequest(claim_recent=claim)),
        ]
        replies = waiter.collect(2)
        copied, claimed = (replies[i] for i in ids)
        assert isinstance(copied, store_pb2.WriteReply) and list(copied.copy.dest_uids) == [1]
        assert isinstance(claimed, store_pb2.WriteReply) and claimed.claim_recent.to_uid == 3
        waiter.send(stream, store_pb2.WriteRequest(expunge=expunge))
        (expunged,) = waiter.collect(1).values()
        assert isinstance(expunged, store_pb2.WriteReply) and list(expunged.expunge.expunged) == [1]
        waiter.send(stream, store_pb2.WriteRequest(move=copy))
        (moved,) = waiter.collect(1).values()
        assert isinstance(moved, store_pb2.WriteReply) and list(moved.copy.expunged) == [2]
    finally:
        stream.close()
        channel.close()
    with store_server.client() as c:
        assert list(c.select("alice", "INBOX").uids) == []
        assert list(c.select("alice", "Saved").uids) == [1, 2]


def test_appends_acknowledged_on_the_stream_survive_kill9(tmp_path: pathlib.Path) -> None:
    """Eight writers share one stream (imapd's shape); an acknowledgement means on disk."""
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock")
    server.start()
    with server.client() as c:
        c.create_user("alice", "pw")
        epoch = c.epoch()
    acked: dict[str, int] = {}
    lock = threading.Lock()
    channel = open_channel(server.address)
    stream = WriteStream(store_pb2_grpc.MailStoreStub(channel))
    stop = threading.Event()
    failures: list[Outcome] = []

    def writer(n: int) -> None:
        seq = 0
        while not stop.is_set():
            token = f"w{n}-{seq}"
            seq += 1
            answered: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
            stream.send(_append(epoch, "alice", f"X-Token: {token}\r\n\r\n{token}\r\n".encode()), answered.put)
            outcome = answered.get(timeout=30)
            if not isinstance(outcome, store_pb2.WriteReply) or outcome.error_code:
                failures.append(outcome)
                return
            with lock:
                acked[token] = outcome.append.uid

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        server.kill9()
        stop.set()
        for t in threads:
            t.join(30)
        assert failures and all(isinstance(f, grpc.RpcError | StreamEnded) for f in failures), failures[:3]
        server.start()
        with server.client() as c:
            mid = c.mailbox_id("alice", "INBOX")
            req = store_pb2.FetchRequest(user="alice", mailbox_id=mid, uid_set="1:*", with_header=True)
            first_lines = {r.meta.header.split(b"\r\n")[0].decode(): r.meta.uid for r in c.stub.Fetch(req)}
        stored = {line.removeprefix("X-Token: "): uid for line, uid in first_lines.items()}
    finally:
        stream.close()
        channel.close()
        server.stop()
    assert len(acked) > 50, f"too few appends were acknowledged ({len(acked)}) for the test to mean much"
    lost = [t for t in acked if t not in stored]
    assert not lost, f"appends acknowledged on the stream lost after kill -9: {lost[:5]}"
    assert all(stored[t] == uid for t, uid in acked.items())


def test_an_open_stream_does_not_hold_the_store_s_shutdown(tmp_path: pathlib.Path) -> None:
    """imapd keeps its stream open for good: SIGTERM must not wait out the whole grace period (5 s)."""
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock")
    server.start()
    with server.client() as c:
        c.create_user("alice", "pw")
        epoch = c.epoch()
    channel = open_channel(server.address)
    stream = WriteStream(store_pb2_grpc.MailStoreStub(channel))
    try:
        answered: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        stream.send(_append(epoch, "alice", b"Subject: before\r\n\r\nx\r\n"), answered.put)
        reply = answered.get(timeout=30)
        assert isinstance(reply, store_pb2.WriteReply) and reply.append.uid == 1
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 3.0
        stream.send(_append(epoch, "alice", b"Subject: after\r\n\r\nx\r\n"), answered.put)
        assert isinstance(answered.get(timeout=30), grpc.RpcError | StreamEnded)  # ended: the next write fails
    finally:
        stream.close()
        channel.close()
        server.stop()


class _UnaryOnly(store_pb2_grpc.MailStoreServicer):
    """A store of before the Writes stream: StoreFlags answers, Writes is UNIMPLEMENTED."""

    def __init__(self) -> None:
        self.calls = 0

    def StoreFlags(
        self, request: store_pb2.StoreFlagsRequest, context: grpc.ServicerContext
    ) -> store_pb2.StoreFlagsReply:
        self.calls += 1
        if request.epoch != 7:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "fenced: writer epoch is older than the store's")
        return store_pb2.StoreFlagsReply(highestmodseq=40 + self.calls)


def test_imapd_falls_back_to_unary_writes_on_a_store_without_the_stream(tmp_path: pathlib.Path) -> None:
    servicer = _UnaryOnly()  # type: ignore[abstract]  # the generated base answers UNIMPLEMENTED for the rest
    server = grpc.server(futures.ThreadPoolExecutor(4))
    store_pb2_grpc.add_MailStoreServicer_to_server(servicer, server)
    address = f"unix:{tmp_path / 'old.sock'}"
    server.add_insecure_port(address)
    server.start()

    async def main() -> None:
        store = GrpcStore(address, 7)
        stale = GrpcStore(address, 6)
        try:
            first = await store.store_flags("alice", 1, "1", FlagMode.ADD, ["\\Seen"])
            second = await store.store_flags("alice", 1, "1", FlagMode.ADD, ["\\Seen"])
            assert (first.highestmodseq, second.highestmodseq) == (41, 42)
            with pytest.raises(Exception) as info:
                await stale.store_flags("alice", 1, "1", FlagMode.ADD, ["\\Seen"])
            assert getattr(info.value, "kind", None) == StoreErrorKind.FENCED
        finally:
            await store.aclose()
            await stale.aclose()

    try:
        trio.run(main)
    finally:
        server.stop(None)
    assert servicer.calls == 3


def _watch(
    stub: store_pb2_grpc.MailStoreStub, mid: int, since: int, token: str
) -> tuple[queue.SimpleQueue[store_pb2.ChangeEvent], Any]:
    """A Watch (with a feed token, or none) read into a queue on a thread; the call to cancel."""
    metadata = (("mailha-feed-token", token),) if token else ()
    call = stub.Watch(store_pb2.WatchRequest(user="tess", mailbox_id=mid, since_modseq=since), metadata=metadata)
    events: queue.SimpleQueue[store_pb2.ChangeEvent] = queue.SimpleQueue()

    def read() -> None:
        try:
            for event in call:
                if not event.heartbeat:
                    events.put(event)
        except grpc.RpcError:
            pass

    threading.Thread(target=read, daemon=True).start()
    return events, call


def test_a_feed_token_gets_its_writes_events_in_the_reply_and_not_on_its_own_watch(
    store_server: StoreServer,
) -> None:
    """imapd's own writes come back in their replies (issue 13); its Watch (same token) does not
    echo them, while a Watch without the token (another process) gets every change."""
    with store_server.client() as c:
        c.create_user("tess", "pw")
        epoch = c.epoch()
        mid = c.mailbox_id("tess", "INBOX")
        since = c.select("tess", "INBOX").mailbox.status.highestmodseq
    channel = open_channel(store_server.address)
    stub = store_pb2_grpc.MailStoreStub(channel)
    mine, my_call = _watch(stub, mid, since, "proc-a")
    theirs, their_call = _watch(stub, mid, since, "")
    for events in (mine, theirs):
        assert events.get(timeout=10).modseq == since  # the catch-up: both feeds are open
    stream = WriteStream(stub)
    stream.metadata = (("mailha-feed-token", "proc-a"),)
    other = WriteStream(stub)  # another process's writes: no token
    waiter = _Waiter()
    try:
        first = waiter.send(stream, _append(epoch, "tess", b"Subject: own\r\n\r\n1\r\n"))
        replies = waiter.collect(1)
        flags = store_pb2.StoreFlagsRequest(
            epoch=epoch, user="tess", mailbox_id=mid, uid_set="1", mode=store_pb2.FLAG_MODE_ADD, flags=["\\Seen"]
        )
        second = waiter.send(stream, store_pb2.WriteRequest(store_flags=flags))
        replies |= waiter.collect(1)
        waiter.send(other, _append(epoch, "tess", b"Subject: lmtp\r\n\r\n2\r\n"))
        waiter.collect(1)
        own = [replies[first], replies[second]]
        assert all(isinstance(r, store_pb2.WriteReply) and not r.error_code for r in own), own
        told = [e for r in own if isinstance(r, store_pb2.WriteReply) for e in r.events]
        assert [(e.modseq, e.after_modseq, len(e.added), len(e.flags)) for e in told] == [
            (since + 1, since, 1, 0),
            (since + 2, since + 1, 0, 1),
        ]
        assert mine.get(timeout=10).modseq == since + 3  # only the other writer's append
        assert [theirs.get(timeout=10).modseq for _ in range(3)] == [since + 1, since + 2, since + 3]
        time.sleep(0.3)
        assert mine.empty() and theirs.empty()
    finally:
        stream.close()
        other.close()
        my_call.cancel()
        their_call.cancel()
        channel.close()
