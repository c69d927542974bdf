"""Appends that share one group commit without nested transactions (store.batch_records).

Each test holds the committer with a blocking operation, queues a mix of
operations behind it so they land in one batch, and checks that the batch
behaves exactly as if every operation had run alone, in order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

from mailha_api import store_pb2
from store import fencing, messages
from store.bodies import BodySource
from store.committer import WriteContext
from store.engine import MailStore
from store.errors import FailedPrecondition, NotFound, ResourceExhausted, StoreError

MSG = b"From: a@example.org\r\nSubject: batch\r\n\r\n" + b"x" * 4000 + b"\r\n"


def _setup(store: MailStore, quota: int = 0) -> tuple[int, int]:
    store.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="pw", quota_bytes=quota))
    store.create_user(store_pb2.CreateUserRequest(epoch=1, name="bob", password="pw"))
    return store.status("alice", "INBOX").mailbox_id, store.status("bob", "INBOX").mailbox_id


def _submit(store: MailStore, mid: int, user: str = "alice", epoch: int = 1) -> Future[store_pb2.AppendReply]:
    header = store_pb2.AppendHeader(epoch=epoch, user=user, mailbox_id=mid, size=len(MSG))
    return store.submit_append(header, BodySource(len(MSG), data=MSG))


def _in_one_batch(store: MailStore, queue_ops: Callable[[], list[Future[Any]]]) -> list[object]:
    """Run what `queue_ops` submits as one batch; each result or the StoreError's message."""
    started, release = threading.Event(), threading.Event()
    batches = store.committer.batches

    def hold(ctx: WriteContext) -> None:
        started.set()
        release.wait(5)

    blocker = store.committer.submit(None, hold, needs_writable=False)
    assert started.wait(5)
    futures = queue_ops()
    release.set()
    blocker.result(5)
    out: list[object] = []
    for f in futures:
        try:
            out.append(f.result(5))
        except StoreError as exc:
            out.append(exc.message)
    assert store.committer.batches - batches == 2  # the blocker's batch, then all of these together
    return out


def _body(store: MailStore, user: str, mid: int, uid: int) -> bytes:
    req = store_pb2.FetchRequest(user=user, mailbox_id=mid, uid_set=str(uid), with_body=True)
    return b"".join(r.chunk.data for r in store.fetch(req) if r.HasField("chunk"))


def test_failing_appends_fail_alone_and_counters_add_up(mail_store: MailStore) -> None:
    alice, bob = _setup(mail_store, quota=3 * len(MSG))
    results = _in_one_batch(
        mail_store,
        lambda: [
            _submit(mail_store, alice),
            _submit(mail_store, bob, user="bob"),
            _submit(mail_store, alice),
            _submit(mail_store, 999_999),  # no such mailbox
            _submit(mail_store, bob),  # bob's mailbox, alice's name: not hers
            _submit(mail_store, alice),
            _submit(mail_store, alice),  # the fourth of alice's: over her quota
            _submit(mail_store, bob, user="bob"),
        ],
    )
    ok = [r for r in results if isinstance(r, store_pb2.AppendReply)]
    assert [(r.mailbox_id, r.uid) for r in ok] == [(alice, 1), (bob, 1), (alice, 2), (alice, 3), (bob, 2)]
    assert "does not exist" in str(results[3]) and "does not exist" in str(results[4])
    assert str(results[6]).startswith("quota: user 'alice' uses")
    status = mail_store.status("alice", "INBOX").status
    assert (status.messages, status.uidnext, status.size) == (3, 4, 3 * len(MSG))
    assert status.highestmodseq == ok[3].modseq
    quota = mail_store.get_quota("alice")
    assert (quota.usage_bytes, quota.messages) == (3 * len(MSG), 3)
    assert mail_store.get_quota("bob").messages == 2
    for user, mid, uids in (("alice", alice, (1, 2, 3)), ("bob", bob, (1, 2))):
        assert [_body(mail_store, user, mid, uid) for uid in uids] == [MSG] * len(uids)
    # Every body got its own id: expunging one message leaves the others readable.
    mail_store.expunge(store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=alice, uid_set="2"))
    mail_store.store_flags(
        store_pb2.StoreFlagsRequest(
            epoch=1, user="alice", mailbox_id=alice, uid_set="1:*", mode=store_pb2.FLAG_MODE_ADD, flags=["\\Deleted"]
        )
    )
    mail_store.expunge(store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=alice, uid_set="3"))
    assert _body(mail_store, "alice", alice, 1) == MSG
    assert _body(mail_store, "bob", bob, 2) == MSG


def test_other_operations_in_the_batch_see_the_appends(mail_store: MailStore) -> None:
    alice, _ = _setup(mail_store)

    def flag_all(ctx: WriteContext) -> int:
        reply = messages.store_flags(
            ctx.txn,
            ctx.dbs,
            "alice",
            alice,
            text="1:*",
            mode=store_pb2.FLAG_MODE_ADD,
            flags=("\\Seen",),
            unchanged_since=None,
        )
        return len(reply.updated)

    results = _in_one_batch(
        mail_store,
        lambda: [
            _submit(mail_store, alice),
            _submit(mail_store, alice),
            mail_store.committer.submit(1, flag_all),  # a nested operation between appends
            _submit(mail_store, alice),
        ],
    )
    assert results[2] == 2  # it saw both earlier appends
    third = results[3]
    assert isinstance(third, store_pb2.AppendReply) and third.uid == 3
    status = mail_store.status("alice", "INBOX").status
    # The flag change's modseq sits between the appends', and unseen counts only the third.
    assert (status.messages, status.unseen, status.uidnext, status.highestmodseq) == (3, 1, 4, third.modseq)
    assert mail_store.get_quota("alice").messages == 3


def test_a_fence_in_the_batch_stops_later_appends_of_the_old_epoch(mail_store: MailStore) -> None:
    alice, _ = _setup(mail_store)
    results = _in_one_batch(
        mail_store,
        lambda: [
            _submit(mail_store, alice),
            mail_store.committer.submit(None, lambda ctx: fencing.fence(ctx.txn, ctx.dbs, 2), needs_writable=False),
            _submit(mail_store, alice),  # the deposed writer
            _submit(mail_store, alice, epoch=2),
        ],
    )
    assert isinstance(results[0], store_pb2.AppendReply)
    assert str(results[2]).startswith("fenced: writer epoch 1 is older than the store's epoch 2")
    assert isinstance(results[3], store_pb2.AppendReply) and results[3].uid == 2
    assert mail_store.status("alice", "INBOX").status.messages == 2
    with pytest.raises(FailedPrecondition):
        mail_store.append(
            store_pb2.AppendHeader(epoch=1, user="alice", mailbox_id=alice, size=len(MSG)),
            BodySource(len(MSG), data=MSG),
        )


def test_an_unexpected_failure_after_writing_reruns_the_batch_safely(mail_store: MailStore) -> None:
    alice, _ = _setup(mail_store)

    def broken(ctx: WriteContext) -> None:
        # Breaks the flat promise: writes, then fails with something that is not a StoreError.
        messages.append(
            ctx.txn,
            ctx.dbs,
            "alice",
            alice,
            [messages.NewMessage(BodySource(len(MSG), data=MSG), (), 0, 0)],
            records=ctx.records,
        )
        raise RuntimeError("bug")

    results = _in_one_batch(
        mail_store,
        lambda: [
            _submit(mail_store, alice),
            mail_store.committer.submit(1, broken, flat=True),
            _submit(mail_store, alice),
        ],
    )
    assert mail_store.committer.safe_reruns == 1
    assert [getattr(r, "uid", None) for r in (results[0], results[2])] == [1, 2]
    assert "write operation failed: RuntimeError: bug" in str(results[1])
    status = mail_store.status("alice", "INBOX").status
    assert (status.messages, status.uidnext) == (2, 3)  # nothing of the broken one is left
    assert mail_store.get_quota("alice").messages == 2


def test_unknown_user_append_in_a_batch_is_not_found(mail_store: MailStore) -> None:
    alice, _ = _setup(mail_store)
    with pytest.raises(NotFound):
        _submit(mail_store, alice, user="carol").result(5)
    mail_store.set_quota(store_pb2.SetQuotaRequest(epoch=1, user="alice", limit_bytes=len(MSG)))
    assert isinstance(_submit(mail_store, alice).result(5), store_pb2.AppendReply)
    with pytest.raises(ResourceExhausted):
        _submit(mail_store, alice).result(5)
