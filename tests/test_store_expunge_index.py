"""The `deleted` index (messages flagged \\Deleted) that EXPUNGE reads instead of scanning the mailbox.

Every test ends by checking the index against the messages themselves, so an operation that
forgets to maintain it fails here even when EXPUNGE's answer happens to be right.
"""

from __future__ import annotations

import pathlib
import threading

import lmdb

from mailha_api import store_pb2
from store.bodies import BodySource
from store.engine import MailStore, StoreOptions
from store.schema import MAX_DBS, MSG_KEY, MessageRecord

MSG = b"From: a@example.org\r\nSubject: hello\r\n\r\nbody text\r\n"
DELETED = "\\Deleted"


def _user(store: MailStore) -> None:
    store.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="pw"))


def _append(store: MailStore, mailbox: str = "INBOX", flags: tuple[str, ...] = ()) -> int:
    header = store_pb2.AppendHeader(epoch=1, user="alice", mailbox=mailbox, flags=list(flags), size=len(MSG))
    return store.append(header, BodySource(len(MSG), data=MSG)).uid


def _mid(store: MailStore, name: str = "INBOX") -> int:
    return store.status("alice", name).mailbox_id


def _flags(
    store: MailStore, mailbox: str, uids: str, mode: store_pb2.FlagMode.ValueType, flags: tuple[str, ...] = (DELETED,)
) -> None:
    req = store_pb2.StoreFlagsRequest(
        epoch=1, user="alice", mailbox_id=_mid(store, mailbox), uid_set=uids, mode=mode, flags=list(flags)
    )
    store.store_flags(req)


def _expunge(store: MailStore, mailbox: str = "INBOX", uids: str = "") -> list[int]:
    req = store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=_mid(store, mailbox), uid_set=uids)
    return list(store.expunge(req).expunged)


def _index(store: MailStore) -> set[tuple[int, int]]:
    with store.env.begin() as txn:
        return {MSG_KEY.unpack(bytes(k)) for k in txn.cursor(db=store.dbs.deleted).iternext(values=False)}


def _flagged(store: MailStore) -> set[tuple[int, int]]:
    with store.env.begin() as txn:
        return {
            MSG_KEY.unpack(bytes(k)) for k, v in txn.cursor(db=store.dbs.messages) if MessageRecord.unpack(v).deleted
        }


def _assert_index_matches(store: MailStore) -> None:
    assert _index(store) == _flagged(store)
    for info in store.list_mailboxes(store_pb2.ListMailboxesRequest(user="alice", with_status=True)).mailboxes:
        assert info.status.deleted == len({u for m, u in _index(store) if m == info.mailbox_id}), info.name


def test_expunge_follows_flag_add_remove_and_replace(mail_store: MailStore) -> None:
    _user(mail_store)
    for _ in range(6):
        _append(mail_store)
    _flags(mail_store, "INBOX", "1,3,5", store_pb2.FLAG_MODE_ADD)
    _flags(mail_store, "INBOX", "3", store_pb2.FLAG_MODE_REMOVE)
    _flags(mail_store, "INBOX", "6", store_pb2.FLAG_MODE_REPLACE, (DELETED, "\\Seen"))
    _flags(mail_store, "INBOX", "5", store_pb2.FLAG_MODE_REPLACE, ("\\Seen",))
    _assert_index_matches(mail_store)
    assert _index(mail_store) == {(_mid(mail_store), 1), (_mid(mail_store), 6)}
    assert _expunge(mail_store) == [1, 6]
    assert list(mail_store.select("alice", "INBOX").uids) == [2, 3, 4, 5]
    assert _expunge(mail_store) == []
    _assert_index_matches(mail_store)


def test_append_with_deleted_flag_and_concurrent_batches(mail_store: MailStore) -> None:
    _user(mail_store)
    # Concurrent appends share the committer's batches (the flat path of batch_records).
    threads = [
        threading.Thread(target=lambda i=i: [_append(mail_store, flags=(DELETED,) if i % 2 else ()) for _ in range(5)])
        for i in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _assert_index_matches(mail_store)
    assert len(_index(mail_store)) == 15
    gone = _expunge(mail_store)
    assert len(gone) == 15 and mail_store.status("alice", "INBOX").status.messages == 15
    _assert_index_matches(mail_store)


def test_uid_expunge_takes_only_the_subset(mail_store: MailStore) -> None:
    _user(mail_store)
    for _ in range(6):
        _append(mail_store, flags=(DELETED,))
    assert _expunge(mail_store, uids="2:3,5") == [2, 3, 5]
    _assert_index_matches(mail_store)
    assert _expunge(mail_store, uids="6:*") == [6]
    assert _expunge(mail_store, uids="10:20") == []
    assert _expunge(mail_store) == [1, 4]
    _assert_index_matches(mail_store)


def test_copy_and_move_carry_the_deleted_flag(mail_store: MailStore) -> None:
    _user(mail_store)
    for _ in range(3):
        _append(mail_store)
    _flags(mail_store, "INBOX", "1:2", store_pb2.FLAG_MODE_ADD)
    inbox = _mid(mail_store)
    copy = store_pb2.CopyRequest(epoch=1, user="alice", mailbox_id=inbox, uid_set="1,3", dest_mailbox="Archive")
    mail_store.copy(copy, move=False)
    move = store_pb2.CopyRequest(epoch=1, user="alice", mailbox_id=inbox, uid_set="2", dest_mailbox="Trash")
    mail_store.copy(move, move=True)
    _assert_index_matches(mail_store)
    assert _expunge(mail_store, "Archive") == [1]  # the copy of INBOX 1; INBOX 3 was not \Deleted
    assert _expunge(mail_store, "Trash") == [1]  # the moved INBOX 2
    assert _expunge(mail_store) == [1]
    assert list(mail_store.select("alice", "INBOX").uids) == [3]
    _assert_index_matches(mail_store)


def test_rename_and_delete_keep_the_index(mail_store: MailStore) -> None:
    _user(mail_store)
    _append(mail_store)
    _append(mail_store, flags=(DELETED,))
    _append(mail_store, flags=(DELETED,))
    # RENAME INBOX moves its messages to a new mailbox (new ids, UIDs renumbered from 1).
    mail_store.rename_mailbox(store_pb2.RenameMailboxRequest(epoch=1, user="alice", old_name="INBOX", new_name="Old"))
    _assert_index_matches(mail_store)
    assert _expunge(mail_store) == []
    assert _append(mail_store, flags=(DELETED,)) == 4
    assert _expunge(mail_store) == [4]
    # An ordinary rename keeps the mailbox id.
    mail_store.rename_mailbox(store_pb2.RenameMailboxRequest(epoch=1, user="alice", old_name="Old", new_name="Older"))
    assert _expunge(mail_store, "Older", uids="3") == [3]
    mail_store.create_mailbox(store_pb2.CreateMailboxRequest(epoch=1, user="alice", name="Work/Sub"))
    _append(mail_store, mailbox="Work", flags=(DELETED,))
    _append(mail_store, mailbox="Work/Sub", flags=(DELETED,))
    mail_store.delete_mailbox(store_pb2.DeleteMailboxRequest(epoch=1, user="alice", name="Work"))  # \Noselect
    mail_store.delete_mailbox(store_pb2.DeleteMailboxRequest(epoch=1, user="alice", name="Older"))
    _assert_index_matches(mail_store)
    assert _index(mail_store) == {(_mid(mail_store, "Work/Sub"), 1)}
    mail_store.delete_user(store_pb2.DeleteUserRequest(epoch=1, name="alice"))
    assert _index(mail_store) == set()


def test_reopen_builds_a_missing_index(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "store"
    store = MailStore(StoreOptions(data_dir=data))
    store.fence(1)
    _user(store)
    for i in range(5):
        _append(store, flags=(DELETED,) if i in (1, 3) else ())
    store.close()
    # An environment written before the index existed: drop it.
    env = lmdb.open(str(data / "lmdb"), max_dbs=MAX_DBS, subdir=True)
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(b"deleted", txn=txn), delete=True)
    env.close()
    store = MailStore(StoreOptions(data_dir=data))
    try:
        _assert_index_matches(store)
        assert _expunge(store) == [2, 4]
        assert list(store.select("alice", "INBOX").uids) == [1, 3, 5]
    finally:
        store.close()
