"""A body's references: body_meta's count plus `body_refs` (store/bodies.py). COPY and EXPUNGE
of a copy leave body_meta's value alone; a body goes with its last reference, also for bodies
whose copies an older version counted in body_meta."""

from __future__ import annotations

from mailha_api import store_pb2
from store import bodies
from store.bodies import BodySource
from store.engine import MailStore
from store.schema import BODY_META, U64

MSG = b"From: a@example.org\r\nSubject: hello\r\n\r\n" + b"body text\r\n" * 200


def _mid(store: MailStore, name: str) -> int:
    return store.status("alice", name).mailbox_id


def _copy(store: MailStore, src: str, dest: str, uids: str = "1:*") -> None:
    store.copy(
        store_pb2.CopyRequest(epoch=1, user="alice", mailbox_id=_mid(store, src), uid_set=uids, dest_mailbox=dest),
        move=False,
    )


def _expunge(store: MailStore, name: str, uids: str = "1:*") -> None:
    mid = _mid(store, name)
    store.store_flags(
        store_pb2.StoreFlagsRequest(
            epoch=1, user="alice", mailbox_id=mid, uid_set=uids, mode=store_pb2.FLAG_MODE_ADD, flags=["\\Deleted"]
        )
    )
    store.expunge(store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=mid))


def _state(store: MailStore) -> tuple[dict[int, int], dict[int, int], int]:
    """(body_id -> body_meta count, body_id -> extra references, chunk entries); checks that
    the counts agree with the message records."""
    with store.env.begin() as txn:
        assert bodies.reference_disagreements(txn, store.dbs) == []
        meta = {
            int(U64.unpack(bytes(k))[0]): bodies.reference_count(BODY_META.unpack_from(bytes(v))[0])
            for k, v in txn.cursor(db=store.dbs.body_meta)
        }
        extra = {b: bodies.extra_references(txn, store.dbs.body_refs, b) for b in meta}
        extra = {b: n for b, n in extra.items() if n}
        chunks = int(txn.stat(store.dbs.body_chunks)["entries"])
    return meta, extra, chunks


def _setup(store: MailStore) -> None:
    store.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="pw"))
    for name in ("A", "B"):
        store.create_mailbox(store_pb2.CreateMailboxRequest(epoch=1, user="alice", name=name))
    for _ in range(3):
        header = store_pb2.AppendHeader(epoch=1, user="alice", mailbox="INBOX", size=len(MSG))
        store.append(header, BodySource(len(MSG), data=MSG))


def test_copies_count_beside_body_meta_and_the_last_reference_frees_the_body(mail_store: MailStore) -> None:
    _setup(mail_store)
    before_meta, _, _ = _state(mail_store)
    with mail_store.env.begin() as txn:
        values_before = {k: bytes(v) for k, v in txn.cursor(db=mail_store.dbs.body_meta)}
    _copy(mail_store, "INBOX", "A")
    _copy(mail_store, "INBOX", "B", "2:3")
    meta, extra, chunks = _state(mail_store)
    assert meta == before_meta == {1: 1, 2: 1, 3: 1}
    assert extra == {1: 1, 2: 2, 3: 2}
    with mail_store.env.begin() as txn:  # body_meta's values were not rewritten
        assert {k: bytes(v) for k, v in txn.cursor(db=mail_store.dbs.body_meta)} == values_before
    _expunge(mail_store, "INBOX")
    assert _state(mail_store)[:2] == ({1: 1, 2: 1, 3: 1}, {2: 1, 3: 1})
    _expunge(mail_store, "A")
    meta, extra, _ = _state(mail_store)
    assert (meta, extra) == ({2: 1, 3: 1}, {})
    _expunge(mail_store, "B")
    assert _state(mail_store) == ({}, {}, 0)
    assert chunks > 0


def test_counts_an_older_version_kept_in_body_meta_still_free_the_body_at_the_end(mail_store: MailStore) -> None:
    _setup(mail_store)
    # An older version counted a COPY into A in body_meta: body 1 at 2 there, the copy's record in A.
    _copy(mail_store, "INBOX", "A", "1")
    with mail_store.env.begin(write=True) as txn:
        key = U64.pack(1)
        found = txn.get(key, db=mail_store.dbs.body_meta)
        assert found is not None
        raw = bytes(found)
        refs, size = BODY_META.unpack_from(raw)
        txn.put(key, BODY_META.pack(refs + 1, size) + raw[BODY_META.size :], db=mail_store.dbs.body_meta)
        txn.delete(key, db=mail_store.dbs.body_refs)
    _copy(mail_store, "INBOX", "B", "1")  # a new copy: counted in body_refs
    assert _state(mail_store)[:2] == ({1: 2, 2: 1, 3: 1}, {1: 1})
    with mail_store.env.begin(write=True) as txn:  # a lost reference is found
        txn.delete(U64.pack(1), db=mail_store.dbs.body_refs)
        assert bodies.reference_disagreements(txn, mail_store.dbs) == [
            "body 1: 2 references counted, used by 3 messages"
        ]
        txn.abort()
    _expunge(mail_store, "B")
    assert _state(mail_store)[:2] == ({1: 2, 2: 1, 3: 1}, {})
    _expunge(mail_store, "INBOX", "1")
    assert _state(mail_store)[:2] == ({1: 1, 2: 1, 3: 1}, {})
    _expunge(mail_store, "A")
    assert _state(mail_store)[:2] == ({2: 1, 3: 1}, {})


def test_one_expunge_of_several_copies_of_a_body_in_one_mailbox(mail_store: MailStore) -> None:
    """EXPUNGE counts each body's victims together (bodies.decref_all): body_refs first, the
    rest from body_meta, the body gone with its last reference; the other bodies untouched."""
    _setup(mail_store)
    _copy(mail_store, "INBOX", "INBOX", "1")  # UID 4, body 1
    _copy(mail_store, "INBOX", "INBOX", "1")  # UID 5, body 1
    _copy(mail_store, "INBOX", "A", "2")  # body 2 in A as well
    assert _state(mail_store)[:2] == ({1: 1, 2: 1, 3: 1}, {1: 2, 2: 1})
    _expunge(mail_store, "INBOX", "4:5")  # two of body 1's three references, both extras
    assert _state(mail_store)[:2] == ({1: 1, 2: 1, 3: 1}, {2: 1})
    _copy(mail_store, "INBOX", "INBOX", "1:2")  # UIDs 6 (body 1) and 7 (body 2)
    assert _state(mail_store)[:2] == ({1: 1, 2: 1, 3: 1}, {1: 1, 2: 2})
    _expunge(mail_store, "INBOX", "1:2,6:7")  # body 1: its extra, then body_meta's one; body 2: two extras
    meta, extra, _ = _state(mail_store)
    assert (meta, extra) == ({2: 1, 3: 1}, {})
    status = mail_store.status("alice", "INBOX").status
    assert (status.messages, status.deleted) == (1, 0)
