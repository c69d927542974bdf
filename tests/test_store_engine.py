"""The store's behaviour in-process (a real LMDB environment in a temp dir, no gRPC)."""

from __future__ import annotations

import pathlib
import random
import threading
import time
from collections.abc import Callable

import pytest

from mailha_api import store_pb2
from store.bodies import BodySource
from store.engine import MailStore, StoreOptions
from store.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    StoreError,
    Unauthenticated,
    Unavailable,
)

MSG = b"From: a@example.org\r\nSubject: hello\r\n\r\nbody text\r\n"


def _user(store: MailStore, name: str = "alice", quota: int = 0) -> None:
    store.create_user(store_pb2.CreateUserRequest(epoch=1, name=name, password="pw", quota_bytes=quota))


def _append(
    store: MailStore,
    data: bytes = MSG,
    *,
    mailbox: str = "INBOX",
    flags: tuple[str, ...] = (),
    user: str = "alice",
    epoch: int = 1,
) -> store_pb2.AppendReply:
    header = store_pb2.AppendHeader(epoch=epoch, user=user, mailbox=mailbox, flags=list(flags), size=len(data))
    return store.append(header, BodySource(len(data), data=data))


def _mid(store: MailStore, name: str = "INBOX") -> int:
    return store.status("alice", name).mailbox_id


def _body(store: MailStore, uid: int, mailbox: str = "INBOX", *, body_offset: int = 0, body_length: int = 0) -> bytes:
    req = store_pb2.FetchRequest(
        user="alice",
        mailbox_id=_mid(store, mailbox),
        uid_set=str(uid),
        with_body=True,
        body_offset=body_offset,
        body_length=body_length,
    )
    return b"".join(r.chunk.data for r in store.fetch(req) if r.HasField("chunk"))


def _snapshot(store: MailStore) -> tuple[object, ...]:
    """Everything observable about alice, to show a failed call changed nothing."""
    boxes = store.list_mailboxes(store_pb2.ListMailboxesRequest(user="alice", with_status=True))
    uids = tuple(tuple(store.select("alice", b.name).uids) for b in boxes.mailboxes if not b.noselect)
    return (boxes.SerializeToString(), uids, store.get_quota("alice").SerializeToString(), store.epoch().epoch)


def _unchanged(store: MailStore, call: Callable[[], object], error: type[StoreError], text: str) -> None:
    before = _snapshot(store)
    with pytest.raises(error) as info:
        call()
    assert text in info.value.message
    assert _snapshot(store) == before


def test_create_user_makes_special_use_mailboxes(mail_store: MailStore) -> None:
    _user(mail_store)
    boxes = mail_store.list_mailboxes(store_pb2.ListMailboxesRequest(user="alice")).mailboxes
    assert [(b.name, b.special_use, b.subscribed) for b in boxes] == [
        ("Archive", "\\Archive", True),
        ("Drafts", "\\Drafts", True),
        ("INBOX", "", True),
        ("Junk", "\\Junk", True),
        ("Sent", "\\Sent", True),
        ("Trash", "\\Trash", True),
    ]
    with pytest.raises(AlreadyExists):
        _user(mail_store)
    mail_store.create_user(store_pb2.CreateUserRequest(epoch=1, name="bare", password="pw", no_default_mailboxes=True))
    assert not mail_store.list_mailboxes(store_pb2.ListMailboxesRequest(user="bare")).mailboxes


def test_append_fetch_and_status(mail_store: MailStore) -> None:
    _user(mail_store)
    first = _append(mail_store, flags=("\\Seen",))
    second = _append(mail_store, MSG + b"more\r\n")
    assert (first.uid, second.uid) == (1, 2)
    assert second.modseq > first.modseq and first.uidvalidity == second.uidvalidity and first.epoch == 1
    info = mail_store.status("alice", "inbox")
    assert (info.status.messages, info.status.unseen, info.status.uidnext) == (2, 1, 3)
    assert info.status.size == len(MSG) * 2 + 6 and info.status.highestmodseq == second.modseq
    assert _body(mail_store, 2) == MSG + b"more\r\n"
    assert _body(mail_store, 2, body_offset=5, body_length=4) == (MSG + b"more\r\n")[5:9]
    req = store_pb2.FetchRequest(user="alice", mailbox_id=_mid(mail_store), uid_set="1:*", with_header=True)
    metas = [r.meta for r in mail_store.fetch(req)]
    assert [(m.uid, list(m.flags)) for m in metas] == [(1, ["\\Seen"]), (2, [])]
    assert metas[0].header == b"From: a@example.org\r\nSubject: hello\r\n\r\n"
    assert list(mail_store.select("alice", "INBOX").uids) == [1, 2]
    assert mail_store.get_quota("alice").usage_bytes == info.status.size


def test_append_claims_recent_in_its_own_commit(mail_store: MailStore) -> None:
    """AppendOne with claim_recent: the range ClaimRecent would give, in the same commit."""
    _user(mail_store)
    _append(mail_store)  # nobody has claimed UID 1 yet
    mid = _mid(mail_store)
    batches = mail_store.committer.batches
    header = store_pb2.AppendHeader(epoch=1, user="alice", mailbox="INBOX", size=len(MSG), claim_recent=True)
    reply = mail_store.append(header, BodySource(len(MSG), data=MSG))
    assert (reply.uid, reply.recent_from, reply.recent_to) == (2, 1, 3)
    assert mail_store.committer.batches == batches + 1  # one commit for the append and its claim
    claim = store_pb2.ClaimRecentRequest(epoch=1, user="alice", mailbox_id=mid, up_to_uid=3)
    again = mail_store.claim_recent(claim)
    assert (again.from_uid, again.to_uid) == (3, 3)  # already taken
    plain = _append(mail_store)  # without the flag nothing is claimed
    assert (plain.uid, plain.recent_from, plain.recent_to) == (3, 0, 0)
    assert mail_store.select("alice", "INBOX").recent_boundary == 3
    with pytest.raises(NotFound):
        header = store_pb2.AppendHeader(epoch=1, user="alice", mailbox="Nope", size=len(MSG), claim_recent=True)
        mail_store.append(header, BodySource(len(MSG), data=MSG))
    assert mail_store.select("alice", "INBOX").recent_boundary == 3


def test_large_body_is_chunked_and_read_back(mail_store: MailStore) -> None:
    _user(mail_store)
    data = MSG + bytes(range(256)) * 4000  # ~1 MiB: several 256 KiB chunks
    _append(mail_store, data)
    assert _body(mail_store, 1) == data
    assert _body(mail_store, 1, body_offset=300_000, body_length=70_000) == data[300_000:370_000]


def test_store_flags_modes_and_unchanged_since(mail_store: MailStore) -> None:
    _user(mail_store)
    for _ in range(3):
        _append(mail_store)
    mid = _mid(mail_store)

    def store(
        uids: str, mode: store_pb2.FlagMode.ValueType, flags: list[str], since: int | None = None
    ) -> store_pb2.StoreFlagsReply:
        req = store_pb2.StoreFlagsRequest(epoch=1, user="alice", mailbox_id=mid, uid_set=uids, mode=mode, flags=flags)
        if since is not None:
            req.unchanged_since, req.has_unchanged_since = since, True
        return mail_store.store_flags(req)

    r = store("1:2", store_pb2.FLAG_MODE_ADD, ["\\Seen", "$Work"])
    assert [(m.uid, list(m.flags)) for m in r.updated] == [(1, ["$Work", "\\Seen"]), (2, ["$Work", "\\Seen"])]
    modseq_after = r.highestmodseq
    assert store("1", store_pb2.FLAG_MODE_ADD, ["\\Seen"]).updated == []  # nothing changed: no new modseq
    r = store("2", store_pb2.FLAG_MODE_REMOVE, ["$Work"])
    assert list(r.updated[0].flags) == ["\\Seen"] and r.highestmodseq > modseq_after
    r = store("1:3", store_pb2.FLAG_MODE_REPLACE, ["\\Flagged"], since=modseq_after)
    assert list(r.modified) == [2]  # changed after modseq_after: left alone and reported
    assert sorted(m.uid for m in r.updated) == [1, 3]
    assert mail_store.status("alice", "INBOX").status.unseen == 2
    assert mail_store.select("alice", "INBOX").permanent_flags == []


def test_copy_move_expunge_and_vanished(mail_store: MailStore) -> None:
    _user(mail_store)
    for _ in range(4):
        _append(mail_store)
    mid = _mid(mail_store)
    usage = mail_store.get_quota("alice").usage_bytes
    copied = mail_store.copy(
        store_pb2.CopyRequest(epoch=1, user="alice", mailbox_id=mid, uid_set="1:2", dest_mailbox="Archive"), move=False
    )
    assert (list(copied.source_uids), list(copied.dest_uids)) == ([1, 2], [1, 2])
    assert mail_store.get_quota("alice").usage_bytes == usage * 3 // 2  # quota counts copies
    assert _body(mail_store, 2, "Archive") == MSG
    moved = mail_store.copy(
        store_pb2.CopyRequest(epoch=1, user="alice", mailbox_id=mid, uid_set="3", dest_mailbox="Trash"), move=True
    )
    assert list(moved.expunged) == [3] and list(moved.dest_uids) == [1]
    mark = mail_store.status("alice", "INBOX").status.highestmodseq
    req = store_pb2.StoreFlagsRequest(
        epoch=1, user="alice", mailbox_id=mid, uid_set="1,4", mode=store_pb2.FLAG_MODE_ADD, flags=["\\Deleted"]
    )
    mail_store.store_flags(req)
    only_4 = mail_store.expunge(store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=mid, uid_set="4:*"))
    assert list(only_4.expunged) == [4]
    rest = mail_store.expunge(store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=mid))
    assert list(rest.expunged) == [1]
    assert list(mail_store.select("alice", "INBOX").uids) == [2]
    gone = mail_store.vanished(store_pb2.VanishedRequest(user="alice", mailbox_id=mid, since_modseq=mark))
    assert list(gone.uids) == [1, 4]
    all_gone = mail_store.vanished(
        store_pb2.VanishedRequest(user="alice", mailbox_id=mid, since_modseq=0, uid_set="1:3")
    )
    assert list(all_gone.uids) == [1, 3]
    # The copy in Archive still has its body although INBOX's uid 1 is gone (reference counted).
    assert _body(mail_store, 1, "Archive") == MSG
    # UIDs are never reused.
    assert _append(mail_store).uid == 5


def test_mailbox_create_rename_delete(mail_store: MailStore) -> None:
    _user(mail_store)
    created = mail_store.create_mailbox(store_pb2.CreateMailboxRequest(epoch=1, user="alice", name="Work/2026/Q1"))
    assert created.name == "Work/2026/Q1"
    names = [b.name for b in mail_store.list_mailboxes(store_pb2.ListMailboxesRequest(user="alice")).mailboxes]
    assert {"Work", "Work/2026", "Work/2026/Q1"} <= set(names)
    _append(mail_store, mailbox="Work/2026")
    old_id = _mid(mail_store, "Work")
    old_uv = mail_store.status("alice", "Work").status.uidvalidity
    renamed = mail_store.rename_mailbox(
        store_pb2.RenameMailboxRequest(epoch=1, user="alice", old_name="Work", new_name="Jobs/Old")
    )
    assert renamed.mailbox_id == old_id and renamed.has_children
    names = [b.name for b in mail_store.list_mailboxes(store_pb2.ListMailboxesRequest(user="alice")).mailboxes]
    assert "Work" not in names and {"Jobs", "Jobs/Old", "Jobs/Old/2026", "Jobs/Old/2026/Q1"} <= set(names)
    assert list(mail_store.select("alice", "Jobs/Old/2026").uids) == [1]
    # A new "Work" gets a new UIDVALIDITY (the global counter is never reused).
    mail_store.create_mailbox(store_pb2.CreateMailboxRequest(epoch=1, user="alice", name="Work"))
    assert mail_store.status("alice", "Work").status.uidvalidity > old_uv
    # Deleting a mailbox with children keeps it as \Noselect, without its messages.
    usage = mail_store.get_quota("alice").usage_bytes
    _append(mail_store, mailbox="Jobs/Old")
    mail_store.delete_mailbox(store_pb2.DeleteMailboxRequest(epoch=1, user="alice", name="Jobs/Old"))
    info = mail_store.status("alice", "Jobs/Old")
    assert info.noselect and info.status.messages == 0
    assert mail_store.get_quota("alice").usage_bytes == usage
    with pytest.raises(FailedPrecondition, match="Noselect"):
        mail_store.select("alice", "Jobs/Old")
    with pytest.raises(FailedPrecondition, match="has children"):
        mail_store.delete_mailbox(store_pb2.DeleteMailboxRequest(epoch=1, user="alice", name="Jobs/Old"))
    mail_store.delete_mailbox(store_pb2.DeleteMailboxRequest(epoch=1, user="alice", name="Jobs/Old/2026/Q1"))
    with pytest.raises(NotFound):
        mail_store.status("alice", "Jobs/Old/2026/Q1")
    with pytest.raises(FailedPrecondition, match="INBOX"):
        mail_store.delete_mailbox(store_pb2.DeleteMailboxRequest(epoch=1, user="alice", name="inbox"))


def test_rename_inbox_moves_messages(mail_store: MailStore) -> None:
    _user(mail_store)
    _append(mail_store, flags=("\\Seen",))
    _append(mail_store)
    inbox_id = _mid(mail_store)
    before = mail_store.status("alice", "INBOX").status.highestmodseq
    moved = mail_store.rename_mailbox(
        store_pb2.RenameMailboxRequest(epoch=1, user="alice", old_name="INBOX", new_name="Old")
    )
    assert moved.mailbox_id != inbox_id
    assert mail_store.status("alice", "INBOX").status.messages == 0
    # For INBOX's sessions the messages that left are expunged (QRESYNC's VANISHED too).
    left = mail_store.vanished(store_pb2.VanishedRequest(user="alice", mailbox_id=inbox_id, since_modseq=before))
    assert list(left.uids) == [1, 2]
    old = mail_store.status("alice", "Old").status
    assert (old.messages, old.unseen, old.uidnext) == (2, 1, 3)
    assert _body(mail_store, 2, "Old") == MSG
    assert _append(mail_store).uid == 3  # INBOX keeps its UIDVALIDITY and never reuses UIDs


def test_bad_inputs_get_documented_errors_and_change_nothing(mail_store: MailStore) -> None:
    _user(mail_store, quota=len(MSG) * 3 // 2)
    _append(mail_store)
    mid = _mid(mail_store)
    _unchanged(
        mail_store,
        lambda: mail_store.create_mailbox(store_pb2.CreateMailboxRequest(epoch=1, user="alice", name="a//b")),
        InvalidArgument,
        "empty hierarchy",
    )
    _unchanged(
        mail_store,
        lambda: mail_store.create_mailbox(store_pb2.CreateMailboxRequest(epoch=1, user="alice", name="/x")),
        InvalidArgument,
        "must not start",
    )
    _unchanged(
        mail_store,
        lambda: mail_store.create_mailbox(store_pb2.CreateMailboxRequest(epoch=1, user="alice", name="Sent")),
        AlreadyExists,
        "already exists",
    )
    _unchanged(mail_store, lambda: _append(mail_store, b"x" * (1024 * 1024 + 1)), ResourceExhausted, "size:")
    _unchanged(mail_store, lambda: _append(mail_store, MSG * 3), ResourceExhausted, "quota:")
    _unchanged(mail_store, lambda: _append(mail_store, user="nobody"), NotFound, "nobody")
    _unchanged(mail_store, lambda: _append(mail_store, mailbox="Nope"), NotFound, "Nope")
    _unchanged(mail_store, lambda: _append(mail_store, flags=("\\Recent",)), InvalidArgument, "Recent")
    flags_req = store_pb2.StoreFlagsRequest(epoch=1, user="alice", mailbox_id=mid, uid_set="1:x", flags=["\\Seen"])
    _unchanged(mail_store, lambda: mail_store.store_flags(flags_req), InvalidArgument, "malformed")
    copy_req = store_pb2.CopyRequest(epoch=1, user="alice", mailbox_id=mid, uid_set="1", dest_mailbox="Archive")
    _unchanged(mail_store, lambda: mail_store.copy(copy_req, move=False), ResourceExhausted, "quota:")
    _unchanged(
        mail_store,
        lambda: list(mail_store.fetch(store_pb2.FetchRequest(user="alice", mailbox_id=mid, uid_set="0"))),
        InvalidArgument,
        "not a valid UID",
    )
    _unchanged(
        mail_store,
        lambda: mail_store.set_quota(store_pb2.SetQuotaRequest(epoch=1, user="alice", limit_bytes=-1)),
        InvalidArgument,
        "negative",
    )
    _unchanged(
        mail_store,
        lambda: mail_store.rename_mailbox(
            store_pb2.RenameMailboxRequest(epoch=1, user="alice", old_name="Sent", new_name="Sent/Sub")
        ),
        InvalidArgument,
        "own child",
    )
    _unchanged(
        mail_store,
        lambda: mail_store.create_user(store_pb2.CreateUserRequest(epoch=1, name="Bad Name", password="pw")),
        InvalidArgument,
        "user name",
    )
    _unchanged(
        mail_store,
        lambda: mail_store.add_address(store_pb2.AddAddressRequest(epoch=1, address="not-an-address", user="alice")),
        InvalidArgument,
        "invalid",
    )


def test_fencing_in_the_write_transaction(mail_store: MailStore) -> None:
    _user(mail_store)
    assert mail_store.fence(1).epoch == 1  # idempotent
    _unchanged(mail_store, lambda: _append(mail_store, epoch=2), FailedPrecondition, "not established")
    assert mail_store.fence(3).epoch == 3
    _unchanged(
        mail_store,
        lambda: _append(mail_store, epoch=1),
        FailedPrecondition,
        "fenced: writer epoch 1 is older than the store's epoch 3",
    )
    _unchanged(mail_store, lambda: mail_store.fence(2), FailedPrecondition, "fenced")
    assert _append(mail_store, epoch=3).epoch == 3


def test_set_writable_suspends_every_write(mail_store: MailStore) -> None:
    _user(mail_store)
    assert not mail_store.set_writable(1, False).writable
    _unchanged(mail_store, lambda: _append(mail_store), Unavailable, "suspended")
    with pytest.raises(FailedPrecondition):
        mail_store.set_writable(7, True)
    assert mail_store.set_writable(1, True).writable
    assert _append(mail_store).uid == 1


def test_users_addresses_quota_and_login(mail_store: MailStore) -> None:
    _user(mail_store)
    mail_store.add_address(store_pb2.AddAddressRequest(epoch=1, address="Alice@Example.org", user="alice"))
    with pytest.raises(AlreadyExists):
        mail_store.add_address(store_pb2.AddAddressRequest(epoch=1, address="alice@example.org", user="alice"))
    assert mail_store.resolve_address("alice+news@EXAMPLE.org").user == "alice"
    with pytest.raises(NotFound):
        mail_store.resolve_address("bob@example.org")
    assert mail_store.authenticate("alice", "pw") == "alice"
    assert mail_store.authenticate("alice@example.org", "pw") == "alice"
    for login, pw in (("alice", "wrong"), ("bob", "pw"), ("alice", "")):
        with pytest.raises(Unauthenticated) as info:
            mail_store.authenticate(login, pw)
        assert info.value.message == "authentication failed: unknown user or wrong password"
    t0 = time.perf_counter()
    for _ in range(50):
        mail_store.authenticate("alice", "pw")
    assert time.perf_counter() - t0 < 1.0  # cached: far below 50 scrypt runs
    mail_store.set_password(store_pb2.SetPasswordRequest(epoch=1, name="alice", password="new"))
    with pytest.raises(Unauthenticated):
        mail_store.authenticate("alice", "pw")
    assert mail_store.authenticate("alice", "new") == "alice"
    q = mail_store.set_quota(store_pb2.SetQuotaRequest(epoch=1, user="alice", limit_bytes=5000))
    assert q.limit_bytes == 5000
    assert mail_store.get_user("alice").addresses == ["alice@example.org"]
    mail_store.delete_user(store_pb2.DeleteUserRequest(epoch=1, name="alice"))
    with pytest.raises(Unauthenticated):
        mail_store.authenticate("alice", "new")
    with pytest.raises(NotFound):
        mail_store.resolve_address("alice@example.org")
    assert mail_store.list_users().users == []


def test_many_addresses(mail_store: MailStore) -> None:
    _user(mail_store)
    for n in range(0, 10_000, 500):
        # Bounded batches through the committer, concurrently: group commit at work.
        threads = [
            threading.Thread(
                target=mail_store.add_address,
                args=(store_pb2.AddAddressRequest(epoch=1, address=f"a{n + i}@example.org", user="alice"),),
            )
            for i in range(500)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(mail_store.list_addresses("alice").addresses) == 10_000
    assert mail_store.resolve_address("a9999+x@example.org").user == "alice"
    assert mail_store.committer.batches < mail_store.committer.ops


def test_watch_delivers_commits_and_catches_up(mail_store: MailStore) -> None:
    _user(mail_store)
    mid = _mid(mail_store)
    _append(mail_store)
    mark = mail_store.status("alice", "INBOX").status.highestmodseq
    events: list[store_pb2.ChangeEvent] = []
    ready = threading.Event()

    def consume() -> None:
        stream = mail_store.watch(
            store_pb2.WatchRequest(user="alice", mailbox_id=mid), 0.2, on_subscribe=lambda _: ready.set()
        )
        for event in stream:
            events.append(event)
            if event.deleted or len([e for e in events if not e.heartbeat]) >= 3:
                return

    t = threading.Thread(target=consume)
    t.start()
    assert ready.wait(5)
    time.sleep(0.3)  # let a heartbeat through
    t0 = time.perf_counter()
    _append(mail_store)
    while not any(e.added for e in events) and time.perf_counter() - t0 < 5:
        time.sleep(0.001)
    latency = time.perf_counter() - t0
    req = store_pb2.StoreFlagsRequest(
        epoch=1, user="alice", mailbox_id=mid, uid_set="2", mode=store_pb2.FLAG_MODE_ADD, flags=["\\Deleted"]
    )
    mail_store.store_flags(req)
    mail_store.expunge(store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=mid))
    t.join(5)
    assert any(e.heartbeat for e in events)
    real = [e for e in events if not e.heartbeat]
    assert [m.uid for m in real[0].added] == [2] and latency < 0.5
    assert [m.uid for m in real[1].flags] == [2] and list(real[2].expunged) == [2]
    # Resubscribing with since_modseq catches up from LMDB in one event.
    catch_up = next(iter(mail_store.watch(store_pb2.WatchRequest(user="alice", mailbox_id=mid, since_modseq=mark), 5)))
    assert [m.uid for m in catch_up.added] == [] and list(catch_up.expunged) == [2]
    assert catch_up.modseq == mail_store.status("alice", "INBOX").status.highestmodseq


def test_watch_overflow_ends_the_stream(tmp_path: pathlib.Path) -> None:
    store = MailStore(StoreOptions(data_dir=tmp_path / "small-queue", watch_queue_limit=3))
    try:
        store.fence(1)
        _user(store)
        mid = _mid(store)
        stream = store.watch(store_pb2.WatchRequest(user="alice", mailbox_id=mid, since_modseq=1), 5)
        assert next(stream).modseq == store.status("alice", "INBOX").status.highestmodseq  # subscribed now
        for _ in range(10):
            _append(store, b"Subject: x\r\n\r\ny")  # nobody reads: the subscriber falls behind
        received = []
        with pytest.raises(ResourceExhausted, match="since_modseq"):
            for event in stream:
                received.append(event)
        assert len(received) == 3
        assert store.feed.subscriber_count() == 0
    finally:
        store.close()


def test_map_grows_by_itself_even_with_a_reader_open(tmp_path: pathlib.Path) -> None:
    store = MailStore(StoreOptions(data_dir=tmp_path / "tiny-map", map_size=1024 * 1024))
    try:
        store.fence(1)
        _user(store)
        _append(store)
        open_fetch = store.fetch(
            store_pb2.FetchRequest(user="alice", mailbox_id=_mid(store), uid_set="1:*", with_body=True)
        )
        assert next(open_fetch).HasField("meta")  # a read transaction is open now
        big = MSG + random.Random(1).randbytes(1024 * 1024)  # incompressible: zstd must not shrink it
        done = threading.Event()

        def grow() -> None:
            _append(store, big)
            done.set()

        writer = threading.Thread(target=grow)
        writer.start()
        assert not done.wait(0.5)  # the map must grow, which waits for the open reader
        rest = list(open_fetch)
        assert b"".join(r.chunk.data for r in rest) == MSG
        assert done.wait(10)
        writer.join()
        for _ in range(3):
            _append(store, big)
        assert store.env.info()["map_size"] > 4 * 1024 * 1024
        assert _body(store, 5) == big
    finally:
        store.close()


def test_uid_sets_select_exactly_the_right_messages(mail_store: MailStore) -> None:
    """Random UID sets against a model, with holes and a neighbouring mailbox after this one in key order."""
    _user(mail_store)
    rng = random.Random(7)
    for _ in range(40):
        _append(mail_store, b"Subject: x\r\n\r\ny")
    for _ in range(3):
        _append(mail_store, b"Subject: x\r\n\r\ny", mailbox="Trash")  # a later mailbox id: keys right after INBOX's
    mid = _mid(mail_store)
    deleted = sorted({*rng.sample(range(1, 40), 12), 40})
    mail_store.store_flags(
        store_pb2.StoreFlagsRequest(
            epoch=1,
            user="alice",
            mailbox_id=mid,
            uid_set=",".join(map(str, deleted)),
            mode=store_pb2.FLAG_MODE_ADD,
            flags=["\\Deleted"],
        )
    )
    mail_store.expunge(store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=mid))
    present = [u for u in range(1, 41) if u not in deleted]
    highest = max(present)
    for _ in range(200):
        parts = []
        wanted: set[int] = set()
        for _ in range(rng.randint(1, 4)):
            a = rng.choice([*range(1, 46), "*"])
            b = rng.choice([a, *range(1, 46), "*"])
            parts.append(f"{a}" if a == b else f"{a}:{b}")
            lo, hi = (highest if x == "*" else int(x) for x in (a, b))
            wanted.update(range(min(lo, hi), max(lo, hi) + 1))
        text = ",".join(parts)
        got = [r.meta.uid for r in mail_store.fetch(store_pb2.FetchRequest(user="alice", mailbox_id=mid, uid_set=text))]
        assert got == [u for u in present if u in wanted], text


def test_watch_account_carries_every_mailbox_and_name_event_of_one_user(mail_store: MailStore) -> None:
    _user(mail_store)
    _user(mail_store, "bob")
    events: list[store_pb2.ChangeEvent] = []
    ready = threading.Event()
    stream = mail_store.watch_account(
        store_pb2.WatchAccountRequest(user="alice"), 5, on_subscribe=lambda _: ready.set()
    )

    def consume() -> None:
        for event in stream:
            events.append(event)
            if event.deleted:
                return

    t = threading.Thread(target=consume)
    t.start()
    assert ready.wait(5)
    _append(mail_store)
    _append(mail_store, user="bob")  # another account: not on alice's stream
    mail_store.create_mailbox(store_pb2.CreateMailboxRequest(epoch=1, user="alice", name="Work/Old"))
    mail_store.subscribe(store_pb2.SubscribeRequest(epoch=1, user="alice", name="Work/Old", subscribed=True))
    mail_store.rename_mailbox(store_pb2.RenameMailboxRequest(epoch=1, user="alice", old_name="Work", new_name="Job"))
    mail_store.delete_mailbox(store_pb2.DeleteMailboxRequest(epoch=1, user="alice", name="Job/Old"))
    t.join(5)
    assert not t.is_alive()
    assert all(e.user == "alice" for e in events)
    inbox = _mid(mail_store)
    assert events[0].mailbox_id == inbox and [m.uid for m in events[0].added] == [1]
    # The superior name CREATE made on the way comes first.
    assert [(e.created, e.name) for e in events[1:3]] == [(True, "Work"), (True, "Work/Old")]
    assert (events[3].subscribed, events[3].name, events[3].mailbox_id) == (True, "Work/Old", 0)
    renamed = sorted((e.old_name, e.name) for e in events[4:6])
    assert all(e.renamed for e in events[4:6]) and renamed == [("Work", "Job"), ("Work/Old", "Job/Old")]
    assert (events[6].deleted, events[6].name) == (True, "Job/Old")
    assert mail_store.feed.subscriber_count() == 1  # the generator is parked, still subscribed
    stream.close()
    assert mail_store.feed.subscriber_count() == 0


def test_watch_account_of_an_unknown_user_is_refused(mail_store: MailStore) -> None:
    with pytest.raises(NotFound):
        next(iter(mail_store.watch_account(store_pb2.WatchAccountRequest(user="nobody"), 5)))


def test_appends_are_synced_and_flag_changes_and_recent_claims_are_not(mail_store: MailStore) -> None:
    """The durability class of each write path (store/committer.py, "Durability classes")."""
    _user(mail_store)
    syncs = mail_store.committer.syncs
    reply = _append(mail_store)
    assert mail_store.committer.syncs == syncs + 1  # an acknowledged append is fully durable
    mid = _mid(mail_store)
    flags = store_pb2.StoreFlagsRequest(
        epoch=1, user="alice", mailbox_id=mid, uid_set=str(reply.uid), mode=store_pb2.FLAG_MODE_ADD, flags=["\\Seen"]
    )
    assert mail_store.store_flags(flags).updated
    mail_store.claim_recent(store_pb2.ClaimRecentRequest(epoch=1, user="alice", mailbox_id=mid, up_to_uid=10))
    assert mail_store.committer.syncs == syncs + 1  # neither asked for the meta-page fsync
    mail_store.expunge(store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=mid))
    assert mail_store.committer.syncs == syncs + 2
