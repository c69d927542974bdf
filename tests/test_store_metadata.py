"""The store's METADATA (store/metadata.py): names, bounds, depth, the mailbox's and the
user's lifecycle, and epoch-checked writes like every other write."""

from __future__ import annotations

import pathlib

import pytest

from mailha_api import store_pb2
from store.engine import MailStore, StoreOptions
from store.errors import FailedPrecondition, InvalidArgument, NotFound
from store.metadata import MAX_ENTRIES, MAX_TOTAL, MAX_VALUE


def _set(store: MailStore, mailbox: str, *entries: tuple[str, bytes | None], epoch: int = 1) -> str:
    pbs = [store_pb2.MetadataEntry(name=n, value=v or b"", remove=v is None) for n, v in entries]
    reply = store.set_metadata(store_pb2.SetMetadataRequest(epoch=epoch, user="alice", mailbox=mailbox, entries=pbs))
    return reply.refused


def _get(store: MailStore, mailbox: str, *names: str, depth: int = 0, user: str = "alice") -> dict[str, bytes]:
    req = store_pb2.GetMetadataRequest(user=user, mailbox=mailbox, entries=list(names), depth=depth)
    return {e.name: e.value for e in store.get_metadata(req).entries}


@pytest.fixture
def store(tmp_path: pathlib.Path) -> MailStore:
    s = MailStore(StoreOptions(data_dir=tmp_path / "s"))
    s.fence(1)
    for name in ("alice", "bob"):
        s.create_user(store_pb2.CreateUserRequest(epoch=1, name=name, password="pw"))
    return s


def test_server_and_mailbox_entries_case_and_depth(store: MailStore) -> None:
    try:
        assert _set(store, "", ("/shared/Comment", b"server"), ("/private/vendor/x/y", b"deep")) == ""
        assert _set(store, "INBOX", ("/private/comment", b"mine\x00binary")) == ""
        assert _get(store, "", "/shared/comment") == {"/shared/Comment": b"server"}  # names compare without case
        assert _get(store, "INBOX", "/private/comment") == {"/private/comment": b"mine\x00binary"}
        assert _get(store, "INBOX", "/shared/comment") == {}  # server entries are not the mailbox's
        assert _get(store, "", "/private", depth=1) == {}
        assert _get(store, "", "/private/vendor", depth=1) == {}
        assert _get(store, "", "/private/vendor", depth=2) == {"/private/vendor/x/y": b"deep"}
        assert _get(store, "", "/shared/comment", user="bob") == {}  # each user's own
        assert _set(store, "", ("/shared/comment", None)) == ""
        assert _get(store, "", "/shared/comment") == {}
    finally:
        store.close()


def test_bounds_refuse_and_write_nothing(store: MailStore) -> None:
    try:
        assert _set(store, "INBOX", ("/private/ok", b"v"), ("/private/big", b"x" * (MAX_VALUE + 1))) == "MAXSIZE"
        assert _get(store, "INBOX", "/private/ok") == {}  # all or nothing
        for start in range(0, MAX_ENTRIES, 100):
            assert _set(store, "INBOX", *((f"/private/e{i}", b"v") for i in range(start, start + 100))) == ""
        assert _set(store, "", ("/private/more", b"v")) == "TOOMANY"  # the bound is per user
        assert _set(store, "INBOX", ("/private/e1", b"new value")) == ""  # replacing adds nothing
        assert _set(store, "INBOX", ("/private/e1", None), ("/private/more", b"v")) == ""
        for start in range(0, MAX_ENTRIES, 100):
            _set(store, "INBOX", *((f"/private/e{i}", None) for i in range(start, start + 100)))
        big = b"x" * MAX_VALUE
        n = 0
        while _set(store, "INBOX", (f"/private/big{n}", big)) == "":
            n += 1
        assert n == MAX_TOTAL // MAX_VALUE - 1  # the byte bound (names and separators count too)
        for bad in ("/other/x", "/private", "/private/", "/private/a//b", "/private/a*", "/private/%", "p"):
            with pytest.raises(InvalidArgument):
                _set(store, "INBOX", (bad, b"v"))
        with pytest.raises(InvalidArgument):
            _get(store, "INBOX", "/private/" + "x" * 300)
        with pytest.raises(NotFound):
            _get(store, "nowhere", "/private/comment")
    finally:
        store.close()


def test_rename_keeps_delete_removes_and_writes_are_fenced(store: MailStore) -> None:
    try:
        store.create_mailbox(store_pb2.CreateMailboxRequest(epoch=1, user="alice", name="work"))
        assert _set(store, "work", ("/private/comment", b"w")) == ""
        store.rename_mailbox(store_pb2.RenameMailboxRequest(epoch=1, user="alice", old_name="work", new_name="job"))
        assert _get(store, "job", "/private/comment") == {"/private/comment": b"w"}
        store.delete_mailbox(store_pb2.DeleteMailboxRequest(epoch=1, user="alice", name="job"))
        store.create_mailbox(store_pb2.CreateMailboxRequest(epoch=1, user="alice", name="job"))
        assert _get(store, "job", "/private/comment") == {}
        assert _set(store, "", ("/private/x", b"v")) == ""
        store.delete_user(store_pb2.DeleteUserRequest(epoch=1, name="alice"))
        with store.env.begin() as txn:
            assert txn.stat(store.dbs.metadata)["entries"] == 0
        store.fence(2)
        with pytest.raises(FailedPrecondition, match="fenced"):
            _set(store, "", ("/private/x", b"v"), epoch=1)
    finally:
        store.close()
