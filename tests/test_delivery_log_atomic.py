"""The delivery log is written in the append's own transaction (store/delivery_log.py).

A stored message and its log line survive a crash together or not at all;
a retried delivery (same delivery identity) is logged once; lmtpd sends the
line with the append and logs what stored nothing (refused, discarded,
failed) on its own.
"""

from __future__ import annotations

import pathlib
import secrets
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from lmtpd.local_servers import LocalServers, local_servers
from mailha_api import settings_pb2, settings_pb2_grpc, store_pb2
from store.client import StoreClient
from tests.store_fixtures import StoreServer
from tests.test_lmtp_store import Lmtp

pytestmark = pytest.mark.integration


def _line(token: str, folder: str = "INBOX") -> settings_pb2.DeliveryRecord:
    return settings_pb2.DeliveryRecord(
        time_ms=int(time.time() * 1000),
        sender="s@example.test",
        recipient="alice@example.test",
        user="alice",
        message_id=f"<{token}>",
        size=100,
        reply_code=250,
        result="delivered",
        folder=folder,
    )


def _log(address: str, **query: object) -> list[settings_pb2.DeliveryRecord]:
    with grpc.insecure_channel(address) as channel:
        stub = settings_pb2_grpc.SettingsStub(channel)
        request = settings_pb2.SearchDeliveriesRequest(limit=100_000, **query)  # type: ignore[arg-type]
        return list(stub.SearchDeliveries(request, timeout=30).records)


def _append(client: StoreClient, epoch: int, token: str, *, identity: bytes = b"") -> store_pb2.AppendReply:
    data = f"Message-ID: <{token}>\r\nSubject: log\r\n\r\n{token}\r\n".encode()
    header = store_pb2.AppendHeader(
        epoch=epoch, user="alice", mailbox="INBOX", size=len(data), delivery_id=identity, delivery_log=_line(token)
    )
    reply: store_pb2.AppendReply = client.stub.AppendOne(
        store_pb2.AppendRequest(header=header, data=data, last=True), timeout=10
    )
    return reply


def _inbox_tokens(client: StoreClient) -> list[str]:
    sel = client.select("alice", "INBOX")
    req = store_pb2.FetchRequest(user="alice", mailbox_id=sel.mailbox.mailbox_id, uid_set="1:*", with_header=True)
    out = []
    for r in client.stub.Fetch(req, timeout=30):
        for line in r.meta.header.split(b"\r\n"):
            if line.startswith(b"Message-ID: <"):
                out.append(line[len(b"Message-ID: <") : -1].decode())
    return out


def test_kill9_never_leaves_a_message_without_its_log_line_or_a_line_without_its_message(
    tmp_path: pathlib.Path,
) -> None:
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock")
    server.start()
    with server.client() as c:
        c.create_user("alice", "pw")
    acked: set[str] = set()
    lock = threading.Lock()
    try:
        for round_no in range(3):
            if round_no:
                server.start()  # --fence-next: a new epoch each start
            with server.client() as c:
                epoch = c.epoch()
            stop = threading.Event()

            def writer(n: int, stop: threading.Event = stop, epoch: int = epoch, round_no: int = round_no) -> None:
                with StoreClient(server.address, timeout=10) as client:
                    seq = 0
                    while not stop.is_set():
                        token = f"r{round_no}-w{n}-{seq}"
                        seq += 1
                        try:
                            _append(client, epoch, token)
                        except grpc.RpcError:
                            return  # the store died under us: unacknowledged
                        with lock:
                            acked.add(token)

            threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
            for t in threads:
                t.start()
            time.sleep(0.8 + 0.2 * round_no)
            server.kill9()
            stop.set()
            for t in threads:
                t.join(15)
        server.start()
        with server.client() as c:
            stored = _inbox_tokens(c)
        logged = [r.message_id[1:-1] for r in _log(server.address, user="alice")]
    finally:
        server.stop()
    assert len(acked) > 50, f"too few appends were acknowledged ({len(acked)}) for the test to mean much"
    assert len(stored) == len(set(stored)) and len(logged) == len(set(logged))
    assert acked <= set(stored), "an acknowledged append was lost"
    # Both or neither: even the appends cut off by the kill (committed but not acknowledged).
    assert set(logged) == set(stored), (
        f"messages without a log line: {sorted(set(stored) - set(logged))[:5]}; "
        f"log lines without a message: {sorted(set(logged) - set(stored))[:5]}"
    )


def test_a_retried_delivery_is_logged_once_and_a_refused_append_not_at_all(tmp_path: pathlib.Path) -> None:
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock")
    server.start()
    try:
        with server.client() as c:
            c.create_user("alice", "pw", quota=2000)
            epoch = c.epoch()
            identity = secrets.token_bytes(32)
            first = _append(c, epoch, "once", identity=identity)
            again = _append(c, epoch, "once", identity=identity)
            assert again.duplicate and again.uid == first.uid
            with pytest.raises(grpc.RpcError) as refused:
                _append(c, epoch, "x" * 3000)  # over the 2000-byte quota: nothing stored
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert [r.message_id for r in _log(server.address, user="alice")] == ["<once>"]
    finally:
        server.stop()


@pytest.fixture
def servers(tmp_path: pathlib.Path) -> Iterator[LocalServers]:
    with local_servers(tmp_path, max_message_size=1024 * 1024) as srv:
        with StoreClient(srv.store) as client:
            client.create_user("alice", "alice-pw", epoch=srv.epoch)
            client.stub.AddAddress(store_pb2.AddAddressRequest(epoch=srv.epoch, address="alice@d.test", user="alice"))
            client.create_user("tiny", "tiny-pw", epoch=srv.epoch, quota=1500)
            client.stub.AddAddress(store_pb2.AddAddressRequest(epoch=srv.epoch, address="tiny@d.test", user="tiny"))
        with grpc.insecure_channel(srv.store) as channel:
            settings = settings_pb2.UserSettings(
                user="alice", blocked_domains=["spam.test"], spam_action=settings_pb2.SPAM_DISCARD
            )
            settings_pb2_grpc.SettingsStub(channel).PutSettings(settings_pb2.PutSettingsRequest(settings=settings))
        yield srv


def test_lmtpd_logs_each_recipient_once_with_the_folder_its_append_used(servers: LocalServers) -> None:
    def send(sender: str, rcpts: list[str], mid: str, extra: str = "", size: int = 0) -> list[int]:
        """The reply code after DATA for each recipient (LMTP answers one per recipient)."""
        c = Lmtp(servers.lmtp_port)
        c.send(f"MAIL FROM:<{sender}>\r\n".encode() + b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in rcpts))
        assert c.reply().startswith(b"250")
        for _ in rcpts:
            assert c.reply().startswith(b"250")
        c.send(b"DATA\r\n")
        assert c.reply().startswith(b"354")
        c.send(f"Message-ID: <{mid}>\r\n{extra}Subject: t\r\n\r\n{'x' * size}\r\n.\r\n".encode())
        codes = [int(c.reply()[:3]) for _ in rcpts]
        c.close()
        return codes

    assert send("a@ok.test", ["alice@d.test", "tiny@d.test"], "plain") == [250, 250]
    assert send("b@mx.spam.test", ["alice@d.test"], "blocked") == [250]
    assert send("c@ok.test", ["alice@d.test"], "spam", extra="X-Spam-Flag: YES\r\n") == [250]
    big = send("d@ok.test", ["alice@d.test", "tiny@d.test"], "big", size=3000)
    assert big[0] == 250 and big[1] in (452, 552)
    lines = {(r.message_id, r.user): r for r in _log(servers.store)}
    assert sorted(lines) == sorted(
        [
            ("<plain>", "alice"),
            ("<plain>", "tiny"),
            ("<blocked>", "alice"),
            ("<spam>", "alice"),
            ("<big>", "alice"),
            ("<big>", "tiny"),
        ]
    ), "one line per recipient and delivery"
    assert (lines["<plain>", "alice"].folder, lines["<plain>", "alice"].reply_code) == ("INBOX", 250)
    assert (lines["<blocked>", "alice"].folder, lines["<blocked>", "alice"].result) == ("Junk", "blocked sender domain")
    assert (lines["<spam>", "alice"].folder, lines["<spam>", "alice"].result) == ("", "spam")
    assert lines["<big>", "tiny"].folder == "" and lines["<big>", "tiny"].reply_code in (452, 552)
    with StoreClient(servers.store) as client:
        assert client.select("alice", "Junk").mailbox.status.messages == 1


def test_an_append_decided_on_settings_that_changed_meanwhile_writes_nothing(tmp_path: pathlib.Path) -> None:
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock")
    server.start()
    try:
        with server.client() as c, grpc.insecure_channel(server.address) as channel:
            c.create_user("alice", "pw")
            epoch = c.epoch()
            stub = settings_pb2_grpc.SettingsStub(channel)
            never_saved = stub.GetSettings(settings_pb2.GetSettingsRequest(user="alice")).revision
            assert len(never_saved) == 16

            def append(token: str, revision: bytes, mailbox: str = "INBOX") -> store_pb2.AppendReply:
                data = f"Message-ID: <{token}>\r\n\r\n{token}\r\n".encode()
                header = store_pb2.AppendHeader(
                    epoch=epoch,
                    user="alice",
                    mailbox=mailbox,
                    size=len(data),
                    delivery_log=_line(token, mailbox),
                    settings_revision=revision,
                )
                reply: store_pb2.AppendReply = c.stub.AppendOne(
                    store_pb2.AppendRequest(header=header, data=data, last=True), timeout=10
                )
                return reply

            append("before", never_saved)
            # lmtpd read the settings (nothing blocked: INBOX), then the user blocks the sender...
            blocked = settings_pb2.UserSettings(user="alice", blocked_domains=["spam.test"], revision=b"ignored")
            saved = stub.PutSettings(settings_pb2.PutSettingsRequest(settings=blocked))
            now = stub.GetSettings(settings_pb2.GetSettingsRequest(user="alice")).revision
            assert saved.revision == now != never_saved  # the revision sent is not stored: computed
            # ... so the append decided on the old settings is refused, with nothing stored or logged.
            with pytest.raises(grpc.RpcError) as aborted:
                append("stale", never_saved)
            assert aborted.value.code() == grpc.StatusCode.ABORTED
            assert "settings changed" in (aborted.value.details() or "")
            append("fresh", now, "Junk")
            assert _inbox_tokens(c) == ["before"]
        assert sorted(r.message_id for r in _log(server.address, user="alice")) == ["<before>", "<fresh>"]
    finally:
        server.stop()


def test_settings_lmtpd_cached_are_never_acted_on_once_changed(servers: LocalServers) -> None:
    """lmtpd caches each user's settings: a delivery decided on a stale copy is refused by the
    store (revision), and lmtpd redoes it at once on the fresh settings: the right folder or
    the right refusal, one log line each, no 451."""

    def send(sender: str, mid: str) -> int:
        c = Lmtp(servers.lmtp_port)
        c.send(f"MAIL FROM:<{sender}>\r\nRCPT TO:<alice@d.test>\r\n".encode())
        assert c.reply().startswith(b"250") and c.reply().startswith(b"250")
        c.send(b"DATA\r\n")
        assert c.reply().startswith(b"354")
        c.send(f"Message-ID: <{mid}>\r\nSubject: t\r\n\r\nbody\r\n.\r\n".encode())
        code = int(c.reply()[:3])
        c.close()
        return code

    def put(settings: settings_pb2.UserSettings) -> None:
        with grpc.insecure_channel(servers.store) as channel:
            settings_pb2_grpc.SettingsStub(channel).PutSettings(settings_pb2.PutSettingsRequest(settings=settings))

    assert send("a@ok.test", "one") == 250  # cached now: nothing blocked for ok.test, INBOX
    put(settings_pb2.UserSettings(user="alice", blocked_domains=["ok.test"]))  # blocked -> Junk
    assert send("a@ok.test", "two") == 250
    put(settings_pb2.UserSettings(user="alice", blocked_domains=["ok.test"], block_action=settings_pb2.BLOCK_REFUSE))
    assert send("a@ok.test", "three") == 550
    put(settings_pb2.UserSettings(user="alice"))  # nothing blocked any more: INBOX again
    assert send("a@ok.test", "four") == 250
    lines = {r.message_id: r for r in _log(servers.store, user="alice")}
    assert sorted(lines) == ["<four>", "<one>", "<three>", "<two>"]
    assert [(lines[m].folder, lines[m].reply_code) for m in ("<one>", "<two>", "<three>", "<four>")] == [
        ("INBOX", 250),
        ("Junk", 250),
        ("", 550),
        ("INBOX", 250),
    ]
    with StoreClient(servers.store) as client:
        assert client.select("alice", "Junk").mailbox.status.messages == 1
        assert client.select("alice", "INBOX").mailbox.status.messages == 2
