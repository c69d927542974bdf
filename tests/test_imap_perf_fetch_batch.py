"""FetchBatch (one reply) answers exactly what the streamed Fetch does, and says
`truncated` (with nothing) past its bounds; imapd's UID-set counter for choosing it."""

from __future__ import annotations

import pytest

from imapd.store_grpc import _uid_count
from mailha_api import store_pb2
from store import read_ops
from store.bodies import BodySource
from store.engine import MailStore
from store.errors import InvalidArgument, NotFound


def _setup(store: MailStore, count: int) -> int:
    store.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="pw"))
    for i in range(count):
        data = b"From: a@example.org\r\nSubject: m%d\r\n\r\n" % i + b"x" * (100 * i)
        header = store_pb2.AppendHeader(epoch=1, user="alice", mailbox="INBOX", size=len(data))
        store.append(header, BodySource(len(data), data=data))
    return store.status("alice", "INBOX").mailbox_id


def _streamed(store: MailStore, req: store_pb2.FetchRequest) -> tuple[list[store_pb2.MessageMeta], list[bytes]]:
    metas: list[store_pb2.MessageMeta] = []
    bodies: list[bytes] = []
    for r in store.fetch(req):
        if r.HasField("meta"):
            metas.append(r.meta)
            bodies.append(b"")
        else:
            bodies[-1] += r.chunk.data
    return metas, bodies


@pytest.mark.parametrize(
    "case",
    [
        ("1:*", False, False, 0, 0, 0),
        ("2:4,7", True, False, 0, 0, 0),
        ("3", False, True, 0, 0, 0),
        ("1:8", True, True, 10, 25, 0),
        ("1:*", False, False, 0, 0, 5),
        ("50:60", False, False, 0, 0, 0),
    ],
)
def test_batch_equals_stream(mail_store: MailStore, case: tuple[str, bool, bool, int, int, int]) -> None:
    uid_set, header, body, offset, length, changed_since = case
    mid = _setup(mail_store, 8)
    mail_store.store_flags(
        store_pb2.StoreFlagsRequest(
            epoch=1, user="alice", mailbox_id=mid, uid_set="2,6", mode=store_pb2.FLAG_MODE_ADD, flags=["\\Seen"]
        )
    )
    req = store_pb2.FetchRequest(
        user="alice",
        mailbox_id=mid,
        uid_set=uid_set,
        with_header=header,
        with_body=body,
        body_offset=offset,
        body_length=length,
        changed_since=changed_since,
    )
    metas, bodies = _streamed(mail_store, req)
    batch = mail_store.fetch_batch(req)
    assert not batch.truncated
    assert [m.SerializeToString() for m in batch.metas] == [m.SerializeToString() for m in metas]
    assert list(batch.bodies) == (bodies if body else [])
    if changed_since:
        uids = {m.uid for m in batch.metas}
        assert {2, 6, 8} <= uids and 1 not in uids  # re-flagged ones are newer than their neighbours


def test_batch_truncates_past_bounds(mail_store: MailStore, monkeypatch: pytest.MonkeyPatch) -> None:
    mid = _setup(mail_store, 6)
    req = store_pb2.FetchRequest(user="alice", mailbox_id=mid, uid_set="1:*")
    monkeypatch.setattr(read_ops, "FETCH_BATCH_MAX_MESSAGES", 5)
    reply = mail_store.fetch_batch(req)
    assert reply.truncated and not reply.metas
    monkeypatch.setattr(read_ops, "FETCH_BATCH_MAX_MESSAGES", 6)
    assert len(mail_store.fetch_batch(req).metas) == 6
    body_req = store_pb2.FetchRequest(user="alice", mailbox_id=mid, uid_set="1:*", with_body=True)
    full = sum(len(b) for b in _streamed(mail_store, body_req)[1])
    monkeypatch.setattr(read_ops, "FETCH_BATCH_MAX_BYTES", full - 1)
    reply = mail_store.fetch_batch(body_req)
    assert reply.truncated and not reply.metas and not reply.bodies
    monkeypatch.setattr(read_ops, "FETCH_BATCH_MAX_BYTES", full)
    assert b"".join(mail_store.fetch_batch(body_req).bodies) == b"".join(_streamed(mail_store, body_req)[1])


def test_batch_errors_like_fetch(mail_store: MailStore) -> None:
    mid = _setup(mail_store, 1)
    with pytest.raises(InvalidArgument):
        mail_store.fetch_batch(store_pb2.FetchRequest(user="alice", mailbox_id=mid, uid_set="0"))
    with pytest.raises(NotFound):
        mail_store.fetch_batch(store_pb2.FetchRequest(user="alice", mailbox_id=mid + 999, uid_set="1"))


def test_uid_count() -> None:
    assert _uid_count("7") == 1
    assert _uid_count("1:50") == 50
    assert _uid_count("3,5:9,20") == 7
    assert _uid_count("9:5") == 5
    assert _uid_count("1:*") >= 1 << 32
    assert _uid_count("") >= 1 << 32
