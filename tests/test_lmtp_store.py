"""lmtpd as a process against a real store process (integration)."""

from __future__ import annotations

import pathlib
import smtplib
import socket
from collections.abc import Iterator

import pytest

from lmtpd.local_servers import LocalServers, local_servers, start_lmtpd, stop
from mailha_api import store_pb2
from store.client import StoreClient

pytestmark = pytest.mark.integration

MAX = 21 * 1024 * 1024


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServers]:
    with local_servers(tmp_path_factory.mktemp("lmtp"), max_message_size=MAX) as srv:
        with StoreClient(srv.store) as client:
            client.create_user("alice", "alice-pw", epoch=srv.epoch)
            client.stub.AddAddress(_addr("alice@d.test", "alice", srv.epoch))
            client.stub.AddAddress(_addr("sales@d.test", "alice", srv.epoch))
            client.create_user("tiny", "tiny-pw", epoch=srv.epoch, quota=2000)
            client.stub.AddAddress(_addr("tiny@d.test", "tiny", srv.epoch))
        yield srv


def _addr(address: str, user: str, epoch: int) -> store_pb2.AddAddressRequest:
    return store_pb2.AddAddressRequest(epoch=epoch, address=address, user=user)


class Lmtp:
    """A raw LMTP client: smtplib cannot read one reply per recipient."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        assert self.reply().startswith(b"220 ")
        self.sock.sendall(b"LHLO t\r\n")
        assert b"SIZE" in self.reply()

    def reply(self) -> bytes:
        lines = b""
        while True:
            line = self.file.readline()
            assert line, "connection closed"
            lines += line
            if line[3:4] == b" ":
                return lines

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _inbox(client: StoreClient, user: str) -> list[bytes]:
    box = client.mailbox_id(user, "INBOX")
    return [client.fetch_body(user, box, uid) for uid in client.select(user, "INBOX").uids]


def test_delivery_aliases_plus_unknown_and_headers(servers: LocalServers) -> None:
    c = Lmtp(servers.lmtp_port)
    c.send(
        b"MAIL FROM:<s@x.test>\r\nRCPT TO:<alice+news@d.test>\r\nRCPT TO:<ghost@d.test>\r\n"
        b"RCPT TO:<SALES@d.test>\r\nDATA\r\n"
    )
    assert c.reply().startswith(b"250 2.1.0")
    assert c.reply().startswith(b"250 2.1.5")
    assert c.reply() == b"550 5.1.1 <ghost@d.test>: no such user\r\n"
    assert c.reply().startswith(b"250 2.1.5")
    assert c.reply().startswith(b"354")
    c.send(b"Subject: one\r\n\r\n..dotted\nbare lf\r\n.\r\n")
    assert c.reply().startswith(b"250 2.0.0 <alice+news@d.test> delivered")
    assert c.reply().startswith(b"250 2.0.0 <SALES@d.test> delivered")
    c.close()
    with StoreClient(servers.store) as client:
        bodies = _inbox(client, "alice")
    tail = b"Subject: one\r\n\r\n.dotted\r\nbare lf\r\n"
    assert b"Return-Path: <s@x.test>\r\nDelivered-To: alice+news@d.test\r\n" + tail in bodies
    assert b"Return-Path: <s@x.test>\r\nDelivered-To: SALES@d.test\r\n" + tail in bodies


def test_over_quota_and_too_big(servers: LocalServers) -> None:
    c = Lmtp(servers.lmtp_port)
    c.send(b"MAIL FROM:<s@x.test> SIZE=99999999\r\n")
    assert c.reply().startswith(b"552 5.3.4")
    c.send(b"MAIL FROM:<s@x.test>\r\nRCPT TO:<tiny@d.test>\r\nRCPT TO:<alice@d.test>\r\nDATA\r\n")
    for _ in range(4):
        assert c.reply().startswith((b"250", b"354"))
    c.send(b"Subject: big for tiny\r\n\r\n" + b"y" * 3000 + b"\r\n.\r\n")
    assert c.reply().startswith(b"552 5.2.2 <tiny@d.test>")
    assert c.reply().startswith(b"250 2.0.0 <alice@d.test>")
    c.close()


def test_twenty_mib_message_is_stored_exactly(servers: LocalServers) -> None:
    line = b"0123456789" * 7 + b"\r\n"
    body = b"Subject: big\r\n\r\n" + line * (20 * 1024 * 1024 // len(line))
    with smtplib.LMTP("127.0.0.1", servers.lmtp_port, timeout=60) as lmtp:
        assert lmtp.sendmail("s@x.test", ["alice@d.test"], body) == {}
    with StoreClient(servers.store) as client:
        box = client.mailbox_id("alice", "INBOX")
        uid = client.select("alice", "INBOX").uids[-1]
        stored = client.fetch_body("alice", box, uid)
    assert stored == b"Return-Path: <s@x.test>\r\nDelivered-To: alice@d.test\r\n" + body


def test_fenced_lmtpd_answers_451(servers: LocalServers, tmp_path: pathlib.Path) -> None:
    with StoreClient(servers.store) as client:
        old = client.epoch()
        client.fence(old + 1)
    port, proc = start_lmtpd(tmp_path, servers.store, old, max_message_size=MAX, name="stale")
    try:
        c = Lmtp(port)
        c.send(b"MAIL FROM:<s@x.test>\r\nRCPT TO:<alice@d.test>\r\nDATA\r\n")
        for _ in range(3):
            c.reply()
        c.send(b"Subject: fenced\r\n\r\nx\r\n.\r\n")
        assert c.reply().startswith(b"451 4.3.0 ")
        c.close()
    finally:
        stop(proc)


def test_store_gone_means_451_and_lmtpd_keeps_serving(tmp_path: pathlib.Path) -> None:
    with local_servers(tmp_path, max_message_size=MAX) as srv:
        with StoreClient(srv.store) as client:
            client.create_user("bob", "bob-pw", epoch=srv.epoch)
            client.stub.AddAddress(_addr("bob@d.test", "bob", srv.epoch))
        c = Lmtp(srv.lmtp_port)
        c.send(b"MAIL FROM:<s@x.test>\r\nRCPT TO:<bob@d.test>\r\nDATA\r\n")
        for _ in range(3):
            c.reply()
        c.send(b"Subject: before\r\n\r\nx\r\n.\r\n")
        assert c.reply().startswith(b"250 2.0.0")
        srv.store_process.kill()
        srv.store_process.wait()
        # The pipeline stream breaks: what was in flight gets a temporary failure.
        c.send(b"MAIL FROM:<s@x.test>\r\nRCPT TO:<bob@d.test>\r\nDATA\r\n")
        assert c.reply().startswith(b"250 2.1.0")
        rcpt = c.reply()
        if rcpt.startswith(b"250"):  # resolved from lmtpd's short-lived cache
            assert c.reply().startswith(b"354")
            c.send(b"Subject: after\r\n\r\nx\r\n.\r\n")
            assert c.reply().startswith(b"451 4.3.0 ")
        else:
            assert rcpt.startswith(b"451 4.3.0 ")
            assert c.reply().startswith(b"503")  # DATA without recipients
        # A fresh connection is still greeted and a lookup of a new address fails temporarily.
        c2 = Lmtp(srv.lmtp_port)
        c2.send(b"MAIL FROM:<s@x.test>\r\nRCPT TO:<new@d.test>\r\n")
        assert c2.reply().startswith(b"250")
        assert c2.reply().startswith(b"451 4.3.0 ")
        c.close()
        c2.close()
