"""Exactly-once LMTP delivery (issue 14): the store's delivery identities
(store/delivery_dedupe.py) in the append's own transaction, their window and
pruning, and lmtpd answering an MTA's retry without a second copy."""

from __future__ import annotations

import hashlib
import pathlib
import socket
import time
from collections.abc import Iterator

import lmdb
import pytest

from lmtpd.local_servers import LocalServers, local_servers
from mailha_api import store_pb2
from store.bodies import BodySource
from store.client import StoreClient
from store.delivery_dedupe import Delivered, DeliveryDedupe
from store.engine import MailStore
from store.errors import NotFound
from tests.test_lmtp_store import Lmtp, _addr


def _ident(n: int) -> bytes:
    return hashlib.sha256(str(n).encode()).digest()


def test_window_expiry_and_bounded_storage(tmp_path: pathlib.Path) -> None:
    env = lmdb.open(str(tmp_path / "env"), max_dbs=4)
    dedupe = DeliveryDedupe(env, window=10.0)
    with env.begin(write=True) as txn:
        dedupe.record(txn, "alice", _ident(1), 0.0, Delivered(0, 1, 7, 42))
        assert dedupe.seen(txn, "alice", _ident(1), 9.0) == Delivered(0, 1, 7, 42)
        assert dedupe.seen(txn, "bob", _ident(1), 9.0) is None  # per user
        assert dedupe.seen(txn, "alice", _ident(1), 11.0) is None  # expired, even before pruning
        for t in range(1, 200):  # one delivery a second for 200 s
            dedupe.record(txn, "alice", _ident(1000 + t), float(t), Delivered(t, 1, 7, t))
        # Each write prunes a few expired entries: about one window's worth remain.
        assert dedupe.count(txn) <= 12
        assert dedupe.seen(txn, "alice", _ident(1199), 199.0) is not None
    with pytest.raises(ValueError, match="32 bytes"), env.begin(write=True) as txn:
        dedupe.seen(txn, "alice", b"short", 0.0)
    env.close()


def _store_append(store: MailStore, identity: bytes, data: bytes, user: str = "alice") -> store_pb2.AppendReply:
    header = store_pb2.AppendHeader(epoch=1, user=user, mailbox="INBOX", size=len(data), delivery_id=identity)
    return store.append(header, BodySource(len(data), data=data))


def test_store_appends_an_identity_once_and_records_nothing_for_a_failed_append(mail_store: MailStore) -> None:
    msg = b"Subject: once\r\n\r\nbody\r\n"
    # A failed append (no such user) records nothing: the retry after the fix is stored.
    with pytest.raises(NotFound):
        _store_append(mail_store, _ident(5), msg)
    mail_store.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="pw"))
    first = _store_append(mail_store, _ident(5), msg)
    again = _store_append(mail_store, _ident(5), msg)
    assert not first.duplicate and again.duplicate
    assert (again.uid, again.uidvalidity, again.mailbox_id) == (first.uid, first.uidvalidity, first.mailbox_id)
    other = _store_append(mail_store, _ident(6), msg)
    assert not other.duplicate and other.uid == first.uid + 1
    assert mail_store.status("alice", "INBOX").status.messages == 2


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServers]:
    with local_servers(tmp_path_factory.mktemp("lmtp-once"), max_message_size=1024 * 1024) as srv:
        with StoreClient(srv.store) as client:
            client.create_user("carol", "carol-pw", epoch=srv.epoch)
            client.stub.AddAddress(_addr("carol@d.test", "carol", srv.epoch))
            client.stub.AddAddress(_addr("info@d.test", "carol", srv.epoch))
        yield srv


def _count(srv: LocalServers) -> int:
    with StoreClient(srv.store) as client:
        return len(client.select("carol", "INBOX").uids)


def _transaction(c: Lmtp, body: bytes, rcpts: tuple[str, ...] = ("carol@d.test",)) -> list[bytes]:
    c.send(b"MAIL FROM:<mta@x.test>\r\n" + b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts) + b"DATA\r\n")
    for _ in range(1 + len(rcpts)):
        assert c.reply().startswith(b"250")
    assert c.reply().startswith(b"354")
    c.send(body + b".\r\n")
    return [c.reply() for _ in rcpts]


@pytest.mark.integration
def test_a_retry_after_a_lost_final_reply_stores_one_copy(servers: LocalServers) -> None:
    before = _count(servers)
    body = b"Message-ID: <lost-reply@x.test>\r\nSubject: retry\r\n\r\nonly once\r\n"
    # The MTA sends the whole message and the connection dies before the reply.
    c = Lmtp(servers.lmtp_port)
    c.send(b"MAIL FROM:<mta@x.test>\r\nRCPT TO:<carol@d.test>\r\nDATA\r\n")
    for _ in range(2):
        assert c.reply().startswith(b"250")
    assert c.reply().startswith(b"354")
    c.send(body + b".\r\n")
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    deadline = time.monotonic() + 15
    while _count(servers) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _count(servers) == before + 1  # it was committed: the reply was what got lost
    # The MTA retries the whole transaction: 250, and still one copy.
    retry = Lmtp(servers.lmtp_port)
    assert _transaction(retry, body)[0].startswith(b"250 2.")
    retry.close()
    assert _count(servers) == before + 1
    # A different message, and the same message to another address of the same
    # user (its own Delivered-To), are new deliveries.
    again = Lmtp(servers.lmtp_port)
    assert _transaction(again, body.replace(b"only once", b"another"))[0].startswith(b"250 2.")
    assert _transaction(again, body, ("info@d.test",))[0].startswith(b"250 2.")
    again.close()
    assert _count(servers) == before + 3
