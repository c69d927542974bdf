"""The store's local write socket (store/local_writes.py, store/local_writes_client.py): who may
connect, what a bad frame costs (its own connection, not the others'), an end at step-down,
imapd writing through it beside the store and falling back to gRPC without it, the same
answers as the Writes stream, and a kill -9 of the store with writes in flight."""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import struct
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator

import pytest
import trio
import trio.testing

from imapd.errors import StoreError, StoreErrorKind
from imapd.store_client import AppendResult, AppendSpec, FlagMode
from imapd.store_grpc import GrpcStore
from mailha_api import store_pb2
from store.engine import MailStore
from store.errors import FailedPrecondition, Unavailable
from store.local_frames import MAX_FRAME, VERSION, FrameError, FrameReader, ShortPath, encode, socket_path
from store.local_writes import LocalWritesServer, peer_allowed
from store.local_writes_client import RETRY_SECONDS, LocalWrites, LocalWritesLost, LocalWritesRefused
from store.reader import LocalReader
from store.write_stream import error_code
from tests.store_fixtures import StoreServer

MESSAGE = b"From: a@example.org\r\nSubject: local\r\n\r\nbody\r\n"


def _append(epoch: int, user: str, text: bytes = MESSAGE, rid: int = 1) -> store_pb2.WriteRequest:
    header = store_pb2.AppendHeader(epoch=epoch, user=user, mailbox="INBOX", size=len(text))
    return store_pb2.WriteRequest(id=rid, append=store_pb2.AppendRequest(header=header, data=text, last=True))


class RawClient:
    """A blocking client of the socket that sends what a test tells it to, byte for byte."""

    def __init__(self, path: pathlib.Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        with ShortPath(path) as name:
            self.sock.connect(name)
        self.frames = FrameReader()

    def frame(self) -> bytes | None:
        while (frame := self.frames.next_frame()) is None:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.frames.feed(data)
        return frame

    def hello(self, token: str = "") -> store_pb2.LocalWritesWelcome:
        self.sock.sendall(encode(store_pb2.LocalWritesHello(version=VERSION, feed_token=token).SerializeToString()))
        frame = self.frame()
        assert frame is not None
        return store_pb2.LocalWritesWelcome.FromString(frame)

    def write(self, req: store_pb2.WriteRequest) -> store_pb2.WriteReply:
        self.sock.sendall(encode(req.SerializeToString()))
        frame = self.frame()
        assert frame is not None
        return store_pb2.WriteReply.FromString(frame)

    def ended(self) -> bool:
        return self.frame() is None

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def local_server(mail_store: MailStore) -> Iterator[LocalWritesServer]:
    mail_store.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="pw"))
    # A short private directory of its own: the peer-uid test opens it up to another user.
    where = pathlib.Path(tempfile.mkdtemp(prefix="lw13-"))
    server = LocalWritesServer(mail_store, where, max_connections=3)
    server.start()
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(where)


def test_peer_allowed_is_the_store_user_or_root() -> None:
    assert peer_allowed(1000, 1000)
    assert peer_allowed(0, 1000)
    assert not peer_allowed(1001, 1000)
    assert not peer_allowed(65534, 0)


def test_the_socket_is_private(local_server: LocalWritesServer) -> None:
    assert local_server.path.stat().st_mode & 0o777 == 0o600
    assert local_server.path.name == "writes.sock"


def test_a_store_stopping_after_another_took_the_path_leaves_the_new_socket(local_server: LocalWritesServer) -> None:
    """An HA hand-over on storage both nodes see: the new active's store binds the path while
    the old one still runs; the old one's close must not remove the new one's socket."""
    newer = LocalWritesServer(local_server.store, local_server.path.parent)
    newer.start()
    try:
        local_server.close()
        assert local_server.path.exists()
        client = RawClient(newer.path)
        try:
            assert not client.hello().refused
            reply = client.write(_append(1, "alice"))
            assert reply.WhichOneof("reply") == "append", reply
        finally:
            client.close()
    finally:
        newer.close()
    assert not newer.path.exists()  # its own socket: removed


@pytest.mark.skipif(
    os.getuid() != 0 or shutil.which("setpriv") is None or not os.path.exists("/usr/bin/python3"),
    reason="needs root, setpriv and the system python3 (a child of another uid cannot read the venv)",
)
def test_a_peer_of_another_uid_is_refused(local_server: LocalWritesServer) -> None:
    # Open the directory and the socket to everyone: only the SO_PEERCRED check is left.
    os.chmod(local_server.path.parent, 0o711)
    os.chmod(local_server.path, 0o666)
    hello = encode(store_pb2.LocalWritesHello(version=VERSION).SerializeToString())
    child = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1])\n"
        "try: s.sendall(bytes.fromhex(sys.argv[2]))\n"
        "except BrokenPipeError: pass\n"
        "data=b''\n"
        "try:\n"
        "    while (chunk := s.recv(4096)): data += chunk\n"
        "except ConnectionResetError: pass  # closed with our hello unread: a reset after the welcome\n"
        "sys.stdout.write(data.hex())\n"
    )
    argv = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "/usr/bin/python3", "-c", child]
    done = subprocess.run(
        [*argv, str(local_server.path), hello.hex()], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    frames = FrameReader()
    frames.feed(bytes.fromhex(done.stdout))
    frame = frames.next_frame()
    assert frame is not None
    welcome = store_pb2.LocalWritesWelcome.FromString(frame)
    assert welcome.refused == "peer uid 65534 may not write to this store"
    assert frames.next_frame() is None  # and then the connection was closed
    # The store's own user (here root) still writes.
    client = RawClient(local_server.path)
    assert not client.hello().refused
    assert client.write(_append(1, "alice")).append.uid == 1
    client.close()


def test_an_oversized_frame_ends_only_its_connection(local_server: LocalWritesServer) -> None:
    good, bad = RawClient(local_server.path), RawClient(local_server.path)
    assert not good.hello().refused and not bad.hello().refused
    bad.sock.sendall(struct.pack(">I", MAX_FRAME + 1))  # the header alone is enough to refuse it
    frame = bad.frame()
    assert frame is not None
    reply = store_pb2.WriteReply.FromString(frame)
    assert reply.id == 0 and reply.error_code == 3  # INVALID_ARGUMENT
    assert reply.error_message == f"bad frame: a frame of {MAX_FRAME + 1} bytes is over the limit of {MAX_FRAME}"
    assert bad.ended()
    assert good.write(_append(1, "alice", rid=7)).append.uid == 1
    good.close()
    bad.close()


def test_a_garbage_frame_gets_a_clear_error_and_others_keep_writing(local_server: LocalWritesServer) -> None:
    good, bad = RawClient(local_server.path), RawClient(local_server.path)
    assert not good.hello().refused and not bad.hello().refused
    bad.sock.sendall(encode(b"\xff\xff\xff\xff"))
    frame = bad.frame()
    assert frame is not None
    reply = store_pb2.WriteReply.FromString(frame)
    assert reply.id == 0 and reply.error_message.startswith("bad frame: Error parsing message")
    assert bad.ended()
    # A request without an id cannot be answered: the same end.
    zero = RawClient(local_server.path)
    assert not zero.hello().refused
    reply = zero.write(_append(1, "alice", rid=0))
    assert reply.id == 0 and "id other than 0" in reply.error_message
    assert zero.ended()
    # A write the store refuses is that write's error only.
    refused = good.write(_append(9, "alice", rid=1))
    assert refused.id == 1 and "not established" in refused.error_message
    assert good.write(_append(1, "alice", rid=2)).append.uid == 1
    for client in (good, bad, zero):
        client.close()


def test_a_bad_hello_and_one_connection_too_many_are_refused(local_server: LocalWritesServer) -> None:
    garbage = RawClient(local_server.path)
    garbage.sock.sendall(encode(b"\xff\xff"))
    frame = garbage.frame()
    assert frame is not None
    assert store_pb2.LocalWritesWelcome.FromString(frame).refused.startswith("bad frame: expected a LocalWritesHello")
    assert garbage.ended()
    future = RawClient(local_server.path)
    future.sock.sendall(encode(store_pb2.LocalWritesHello(version=VERSION + 1).SerializeToString()))
    frame = future.frame()
    assert frame is not None
    assert store_pb2.LocalWritesWelcome.FromString(frame).refused == f"protocol version {VERSION + 1} is not {VERSION}"
    for c in (garbage, future):
        c.close()

    held = [RawClient(local_server.path) for _ in range(3)]
    for c in held:
        assert not c.hello().refused
    one_more = RawClient(local_server.path)
    frame = one_more.frame()  # refused at accept: no hello needed
    assert frame is not None
    assert store_pb2.LocalWritesWelcome.FromString(frame).refused == "too many local write connections (at most 3)"

    async def front_end_side() -> None:
        writes = LocalWrites(local_server.path.parent)
        assert writes.ready()
        with pytest.raises(LocalWritesRefused, match="too many local write connections"):
            await writes.write(_append(1, "alice"))
        assert not writes.ready()  # gRPC for a while: the next write does not knock again
        with pytest.raises(LocalWritesRefused, match="refused a moment ago"):
            await writes.write(_append(1, "alice"))
        await trio.sleep(RETRY_SECONDS)
        assert writes.ready()

    trio.run(front_end_side)
    for c in [*held, one_more]:
        c.close()


def test_the_hello_s_feed_token_brings_the_write_s_events_in_its_reply(local_server: LocalWritesServer) -> None:
    mine, plain = RawClient(local_server.path), RawClient(local_server.path)
    assert not mine.hello("proc-a").refused and not plain.hello().refused
    reply = mine.write(_append(1, "alice", rid=1))
    assert [[m.uid for m in e.added] for e in reply.events] == [[reply.append.uid]]
    assert not plain.write(_append(1, "alice", rid=1)).events
    too_long = RawClient(local_server.path)
    assert too_long.hello("x" * 65).refused == "the feed token is not valid"
    for client in (mine, plain, too_long):
        client.close()


def test_ending_the_connections_answers_what_is_in_flight_then_closes(local_server: LocalWritesServer) -> None:
    client = RawClient(local_server.path)
    assert not client.hello().refused
    assert client.write(_append(1, "alice", rid=1)).append.uid == 1
    local_server.end_connections()
    assert client.ended()

    async def front_end_side() -> None:
        writes = LocalWrites(local_server.path.parent)
        assert (await writes.write(_append(1, "alice"))).append.uid == 2
        local_server.end_connections()
        # Ended under it: the next write is lost, as after a Writes stream's StreamEnded. The
        # store counts a reply answered only once it has sent it, so the client can read the
        # last one and ask for the end while that write still counts as in flight; the
        # connection then refuses what comes before it closes, as the store's shutdown does.
        # Either way no write is done after the end, and the client hears why.
        for _ in range(5):
            try:
                refused = await writes.write(_append(1, "alice"))
            except LocalWritesLost:
                break
            assert refused.error_code == error_code(Unavailable("")), refused
            assert "shutting down" in refused.error_message
            await trio.sleep(0.05)
        else:
            raise AssertionError("the ended connection still answers writes")
        again = await writes.write(_append(1, "alice"))  # connects again
        assert again.WhichOneof("reply") == "append" and again.append.uid == 3  # nothing stored in between
        assert writes.connections == 2
        writes.close()

    trio.run(front_end_side)
    client.close()


def test_a_store_that_stops_answering_fails_the_connection_after_the_reply_timeout(tmp_path: pathlib.Path) -> None:
    """A store that welcomes, takes writes and never answers them (hung): the writes in
    flight fail as lost once the oldest has waited `reply_timeout`; without a timeout the
    client waits (its caller bounds it). Trio's mock clock: no real waiting."""
    taken: list[int] = []

    async def hung_store(listener: trio.SocketListener) -> None:
        stream = await listener.accept()
        frames = FrameReader()
        welcomed = False
        while data := await stream.receive_some(65536):
            frames.feed(data)
            while (frame := frames.next_frame()) is not None:
                if not welcomed:
                    await stream.send_all(encode(store_pb2.LocalWritesWelcome(version=VERSION).SerializeToString()))
                    welcomed = True
                else:
                    taken.append(store_pb2.WriteRequest.FromString(frame).id)

    async def main() -> None:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with ShortPath(socket_path(tmp_path)) as name:
            await sock.bind(name)
        sock.listen(4)
        listener = trio.SocketListener(sock)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hung_store, listener)
            writes = LocalWrites(tmp_path, reply_timeout=30.0)
            lost: list[str] = []

            async def one() -> None:
                with pytest.raises(LocalWritesLost) as caught:
                    await writes.write(_append(1, "alice"))
                lost.append(str(caught.value))

            started = trio.current_time()
            with trio.fail_after(100):  # (the test fails rather than hangs)
                async with trio.open_nursery() as writers:
                    writers.start_soon(one)
                    await trio.sleep(10)
                    writers.start_soon(one)  # 10 s younger: lost with the first, at 30-31 s
            waited = trio.current_time() - started
            assert 30 <= waited <= 31 + 1e-6, waited
            assert taken == [1, 2] and lost == ["the store did not answer a write in 30 s"] * 2
            nursery.start_soon(hung_store, listener)
            patient = LocalWrites(tmp_path)
            with trio.move_on_after(600) as waited_long:
                await patient.write(_append(1, "alice"))
            assert waited_long.cancelled_caught  # no reply, no timeout of its own
            patient.close()
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    with pytest.raises(ValueError, match="reply_timeout must be positive"):
        LocalWrites(tmp_path, reply_timeout=0)


def test_a_frame_reader_takes_frames_in_pieces_and_refuses_oversized_ones() -> None:
    reader = FrameReader()
    data = encode(b"one") + encode(b"") + encode(b"three")
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
    assert [reader.next_frame(), reader.next_frame(), reader.next_frame(), reader.next_frame()] == [
        b"one",
        b"",
        b"three",
        None,
    ]
    reader.feed(struct.pack(">I", MAX_FRAME + 1))
    with pytest.raises(FrameError):
        reader.next_frame()
    with pytest.raises(FrameError):
        encode(bytes(MAX_FRAME + 1))


# ---- imapd beside a real store process ------------------------------------------------------


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _put(store: GrpcStore, user: str, data: bytes = MESSAGE, mailbox: str = "INBOX") -> AppendResult:
    return await store.append(user, mailbox, AppendSpec(flags=("\\Seen",)), len(data), _chunks(data))


async def _exercise(store: GrpcStore, user: str) -> list[object]:
    """APPEND, STORE, COPY, MOVE, EXPUNGE and their failures; the answers, normalised."""
    out: list[object] = []
    box = (await store.select(user, "INBOX")).mailbox.mailbox_id
    for i in range(3):
        res = await _put(store, user, MESSAGE + b"%d\r\n" % i)
        out.append(("append", res.uids))
    flags = await store.store_flags(user, box, "1:2", FlagMode.ADD, ("\\Deleted", "$Work"))
    out.append(("store", [(m.uid, sorted(m.flags), m.modseq) for m in flags.updated], flags.highestmodseq))
    await store.create_mailbox(user, "Saved")
    copied = await store.copy(user, box, "3", "Saved")
    out.append(("copy", copied.source_uids, copied.dest_uids))
    moved = await store.move(user, box, "2", "Saved")
    out.append(("move", moved.source_uids, moved.dest_uids, moved.expunged))
    expunged = await store.expunge(user, box)
    out.append(("expunge", expunged.expunged, expunged.highestmodseq))
    for bad in (
        store.store_flags(user, box, "1:x", FlagMode.ADD, ("\\Seen",)),
        _put(store, user, mailbox="Nowhere"),
    ):
        try:
            await bad
        except StoreError as exc:
            out.append(("error", exc.kind, exc.message.replace(user, "<user>")))
    return out


def test_imapd_writes_over_the_socket_with_the_same_answers_as_grpc(store_server: StoreServer) -> None:
    with store_server.client() as c:
        epoch = c.epoch()
        for user in ("viagrpc", "vialocal"):
            c.create_user(user, "pw")

    async def main() -> tuple[list[object], list[object]]:
        remote = GrpcStore(store_server.address, epoch)
        local = GrpcStore(store_server.address, epoch, local=LocalReader(store_server.data_dir))
        try:
            over_grpc = await _exercise(remote, "viagrpc")
            over_socket = await _exercise(local, "vialocal")
            assert local.local_writes is not None and local.local_writes.answered == 9
            assert remote.local_writes is None
        finally:
            await remote.aclose()
            await local.aclose()
        return over_grpc, over_socket

    over_grpc, over_socket = trio.run(main)
    assert over_socket == over_grpc
    assert ("expunge", (1,)) in [entry[:2] for entry in over_socket if isinstance(entry, tuple)]


def test_imapd_writes_over_grpc_without_the_socket(store_server: StoreServer) -> None:
    with store_server.client() as c:
        epoch = c.epoch()
        c.create_user("alice", "pw")
    os.unlink(socket_path(store_server.data_dir))  # as a store that could not make it

    async def main() -> None:
        store = GrpcStore(store_server.address, epoch, local=LocalReader(store_server.data_dir))
        try:
            assert (await _put(store, "alice")).uids == (1,)
            assert store.local_writes is not None and store.local_writes.answered == 0
        finally:
            await store.aclose()

    trio.run(main)


def test_kill9_with_writes_in_flight_fails_them_and_writes_resume(tmp_path: pathlib.Path) -> None:
    """Writers on the socket when the store dies: each write fails or is answered (no hang),
    every acknowledged one is on disk, and writes go over the socket again once it is back."""
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock", ("--fence", "1"))
    server.start()
    with server.client() as c:
        epoch = c.epoch()
        c.create_user("alice", "pw")
    acked: set[int] = set()
    failures: list[StoreError] = []

    async def writer(store: GrpcStore, stop: trio.Event) -> None:
        while not stop.is_set():
            try:
                acked.update((await _put(store, "alice")).uids)
            except StoreError as exc:
                failures.append(exc)
                return

    async def main() -> None:
        store = GrpcStore(server.address, epoch, local=LocalReader(server.data_dir))
        try:
            stop = trio.Event()
            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    for _ in range(8):
                        nursery.start_soon(writer, store, stop)
                    while len(acked) < 40:
                        await trio.sleep(0.01)
                    await trio.to_thread.run_sync(server.kill9)
                    stop.set()
            assert failures and all(e.kind is StoreErrorKind.UNAVAILABLE for e in failures)
            assert store.local_writes is not None
            before = store.local_writes.answered
            await trio.to_thread.run_sync(server.start)
            with trio.fail_after(30):
                while True:  # the first writes may go over gRPC (the socket was missing a moment ago)
                    res = await _put(store, "alice")
                    if store.local_writes.answered > before:
                        break
                    await trio.sleep(0.2)
            assert min(res.uids) > max(acked)
            assert store.local_writes.connections == 2
        finally:
            await store.aclose()

    try:
        trio.run(main)
        with server.client() as c:
            on_disk = set(c.select("alice", "INBOX").uids)
        assert acked <= on_disk
    finally:
        server.stop()


def test_a_lone_append_is_committed_by_the_connection_and_pipelined_ones_are_queued(
    local_server: LocalWritesServer, mail_store: MailStore
) -> None:
    committer = mail_store.committer
    client = RawClient(local_server.path)
    assert not client.hello().refused
    here, batches = committer.batches_here, committer.batches
    assert client.write(_append(1, "alice", rid=1)).append.uid == 1
    assert committer.batches_here == here + 1 and committer.batches == batches + 1
    # Two requests in one send: the first finds the second behind it, so neither is committed
    # by the connection's thread (it would stop reading meanwhile); both go to the committer.
    client.sock.sendall(
        encode(_append(1, "alice", rid=2).SerializeToString()) + encode(_append(1, "alice", rid=3).SerializeToString())
    )
    replies = {}
    for _ in range(2):
        frame = client.frame()
        assert frame is not None
        reply = store_pb2.WriteReply.FromString(frame)
        replies[reply.id] = reply.append.uid
    assert replies == {2: 2, 3: 3}
    assert committer.batches_here == here + 1
    # A refused lone append (fenced) is answered from the connection's thread too, with the error.
    refused = client.write(_append(0, "alice", rid=4))
    assert refused.error_code == error_code(FailedPrecondition("")) and "epoch" in refused.error_message
    assert client.write(_append(1, "alice", rid=5)).append.uid == 4
    client.close()
