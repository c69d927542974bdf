"""`store.reader.LocalReader`: an imapd beside the store reads its LMDB directly.

The answers must be the store's own (same functions, same snapshot rules),
a write the store has answered must be visible to the next local read, and a
map the store grew must not break the reader.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import grpc
import pytest

from mailha_api import store_pb2, store_pb2_grpc
from store.errors import InvalidArgument, NotFound
from store.reader import LocalReader
from store.uid_list_cache import UidListCache
from tests.store_fixtures import ROOT, StoreServer


@pytest.fixture
def store(tmp_path: pathlib.Path) -> Iterator[StoreServer]:
    server = StoreServer(tmp_path / "data", tmp_path / "s.sock").start()
    try:
        yield server
    finally:
        server.stop()


def _message(i: int) -> bytes:
    return b"From: a@mailha.test\r\nSubject: note %d\r\n\r\nbody %d\r\n" % (i, i)


def test_local_answers_equal_the_stores_and_see_its_writes(store: StoreServer) -> None:
    with store.client() as client:
        client.create_user("ann", "ann-secret")
        for i in range(5):
            client.append_bytes("ann", "INBOX", _message(i), flags=["\\Seen"] if i % 2 else [])
    reader = LocalReader(store.data_dir)
    try:
        with grpc.insecure_channel(store.address) as channel:
            stub = store_pb2_grpc.MailStoreStub(channel)
            remote_select = stub.Select(store_pb2.SelectRequest(user="ann", name="INBOX"))
            assert reader.select("ann", "INBOX") == remote_select
            assert list(remote_select.uids) == [1, 2, 3, 4, 5]
            assert reader.status("ann", "INBOX") == stub.Status(store_pb2.StatusRequest(user="ann", name="INBOX"))
            listing = store_pb2.ListMailboxesRequest(user="ann", with_status=True)
            assert reader.list_mailboxes(listing) == stub.ListMailboxes(listing)
            mid = remote_select.mailbox.mailbox_id
            fetch = store_pb2.FetchRequest(user="ann", mailbox_id=mid, uid_set="2:4", with_header=True, with_body=True)
            local_batch = reader.fetch_batch(fetch)
            assert local_batch == stub.FetchBatch(fetch)
            assert [m.uid for m in local_batch.metas] == [2, 3, 4]
            assert local_batch.bodies[0] == _message(1)
            # The same answer without the reply message (imapd's path beside the store).
            items = reader.fetch_items(fetch)
            assert items is not None
            assert [meta for meta, _ in items] == list(local_batch.metas)
            assert [body for _, body in items] == list(local_batch.bodies)
            headers_only = store_pb2.FetchRequest(user="ann", mailbox_id=mid, uid_set="1:*", with_header=True)
            only = reader.fetch_items(headers_only)
            assert only is not None and [body for _, body in only] == [None] * 5
            assert [meta for meta, _ in only] == list(stub.FetchBatch(headers_only).metas)

            # A write the store has answered is in the next local read.
            with store.client() as client:
                client.append_bytes("ann", "INBOX", _message(9))
            assert list(reader.select("ann", "INBOX").uids) == [1, 2, 3, 4, 5, 6]

        with pytest.raises(NotFound):
            reader.select("nobody", "INBOX")
        with pytest.raises(NotFound):
            reader.status("ann", "No such folder")
    finally:
        reader.close()


_WRITE = """
import pathlib, sys
from mailha_api import store_pb2
from store.engine import MailStore, StoreOptions
store = MailStore(StoreOptions(pathlib.Path(sys.argv[1]), map_size=int(sys.argv[2])))
epoch = store.fence_next().epoch
store.create_user(store_pb2.CreateUserRequest(epoch=epoch, name=sys.argv[3], password="a-long-secret"))
# Pages beyond the first map, so a reader still on it must adopt the new size.
with store.env.begin(write=True) as txn:
    txn.put(b"test-padding", b"x" * int(sys.argv[4]), db=store.dbs.meta)
store.close()
"""


def _write_user(data_dir: pathlib.Path, map_size: int, name: str, padding: int = 0) -> None:
    argv = [sys.executable, "-c", textwrap.dedent(_WRITE), str(data_dir), str(map_size), name, str(padding)]
    subprocess.run(argv, cwd=ROOT, check=True, timeout=60)


def test_local_reader_follows_a_map_the_store_grew(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    _write_user(data, 4 * 1024 * 1024, "ann")
    reader = LocalReader(data)
    try:
        assert reader.select("ann", "INBOX").mailbox.name == "INBOX"
        # The store restarts with a bigger map (as it does when it grows it) and writes.
        _write_user(data, 64 * 1024 * 1024, "bob", padding=8 * 1024 * 1024)
        assert reader.select("bob", "INBOX").mailbox.name == "INBOX"
        assert reader.env.info()["map_size"] == 64 * 1024 * 1024
    finally:
        reader.close()


def test_local_reader_refuses_a_directory_without_a_store(tmp_path: pathlib.Path) -> None:
    with pytest.raises(Exception, match="no store environment"):
        LocalReader(tmp_path)


def test_an_expunge_that_removes_nothing_is_told_apart_exactly(store: StoreServer) -> None:
    """nothing_to_expunge says "nothing to write" exactly when Expunge then removes nothing."""
    with store.client() as client:
        client.create_user("di", "di-secret")
        for i in range(6):
            client.append_bytes("di", "INBOX", _message(i), flags=["\\Deleted"] if i in (1, 3, 5) else [])
        epoch = client.epoch()
    reader = LocalReader(store.data_dir)
    try:
        with grpc.insecure_channel(store.address) as channel:
            stub = store_pb2_grpc.MailStoreStub(channel)
            mid = stub.Select(store_pb2.SelectRequest(user="di", name="INBOX")).mailbox.mailbox_id
            cases = (("1", True), ("1:2", False), ("3", True), ("1,3", True), ("1,3:5", False))
            for uid_set, nothing in (*cases, ("", False), ("", True), ("4", True), ("1:3,5:*", True)):
                req = store_pb2.ExpungeRequest(epoch=epoch, user="di", mailbox_id=mid, uid_set=uid_set)
                local = reader.nothing_to_expunge(req)
                reply = stub.Expunge(req)
                assert (local is not None) == nothing == (not reply.expunged), uid_set
                if local is not None:
                    assert local == reply.highestmodseq
            stale = store_pb2.ExpungeRequest(epoch=epoch - 1, user="di", mailbox_id=mid)
            assert reader.nothing_to_expunge(stale) is None  # a deposed writer: the store says FENCED
        with pytest.raises(NotFound):
            reader.nothing_to_expunge(store_pb2.ExpungeRequest(epoch=epoch, user="di", mailbox_id=9999))
        with pytest.raises(InvalidArgument):
            reader.nothing_to_expunge(store_pb2.ExpungeRequest(epoch=epoch, user="di", mailbox_id=mid, uid_set="x"))
    finally:
        reader.close()


def test_a_store_that_changes_nothing_is_told_apart_exactly(store: StoreServer) -> None:
    """unchanged_by_store says "nothing to write" exactly when StoreFlags then writes nothing."""
    with store.client() as client:
        client.create_user("cy", "cy-secret")
        for i in range(3):
            client.append_bytes("cy", "INBOX", _message(i), flags=["\\Seen", "$Label1"] if i == 0 else [])
        epoch = client.epoch()
    reader = LocalReader(store.data_dir)
    try:
        with grpc.insecure_channel(store.address) as channel:
            stub = store_pb2_grpc.MailStoreStub(channel)
            mid = stub.Select(store_pb2.SelectRequest(user="cy", name="INBOX")).mailbox.mailbox_id
            add, remove, replace = store_pb2.FLAG_MODE_ADD, store_pb2.FLAG_MODE_REMOVE, store_pb2.FLAG_MODE_REPLACE
            cases = [
                ("1", add, ["\\seen"], True),  # case as clients send it
                ("1", add, ["\\Seen", "$Label1"], True),
                ("1:2", add, ["\\Seen"], False),  # 2 is not seen yet
                ("2", add, ["\\Seen"], True),  # ... and now it is (the previous case set it)
                ("1:2", add, ["\\Seen"], True),
                ("3", remove, ["\\Flagged"], True),
                ("1", remove, ["$Label1"], False),
                ("1", replace, ["\\Seen"], True),
                ("2", replace, ["\\Seen", "\\Flagged"], False),
                ("1:*", add, [], True),
                ("99", add, ["\\Seen"], True),  # one UID, no such message: nothing to write
            ]
            for uid_set, mode, flags, unchanged in cases:
                req = store_pb2.StoreFlagsRequest(epoch=epoch, user="cy", mailbox_id=mid, uid_set=uid_set, mode=mode)
                req.flags.extend(flags)
                local = reader.unchanged_by_store(req)
                # imapd asks from the fields, before any request is built: the same answer
                assert (
                    reader.flags_already(
                        epoch=epoch, user="cy", mailbox_id=mid, uid_set=uid_set, mode=mode, flags=flags
                    )
                    == local
                )
                reply = stub.StoreFlags(req)
                assert (local is not None) == unchanged == (not reply.updated), (uid_set, mode, flags)
                if local is not None:
                    assert local == reply.highestmodseq
            conditional = store_pb2.StoreFlagsRequest(
                epoch=epoch, user="cy", mailbox_id=mid, uid_set="1", mode=add, has_unchanged_since=True
            )
            assert reader.unchanged_by_store(conditional) is None  # UNCHANGEDSINCE: always the store's call
            stale = store_pb2.StoreFlagsRequest(epoch=epoch - 1, user="cy", mailbox_id=mid, uid_set="1", mode=add)
            assert reader.unchanged_by_store(stale) is None  # a deposed writer: the store says FENCED
        with pytest.raises(NotFound):
            reader.unchanged_by_store(store_pb2.StoreFlagsRequest(user="cy", mailbox_id=9999, uid_set="1"))
        for bad in ("0", "4294967296", "99999999999"):  # one UID out of range: refused as the store refuses it
            with pytest.raises(InvalidArgument):
                reader.unchanged_by_store(store_pb2.StoreFlagsRequest(user="cy", mailbox_id=mid, uid_set=bad))
    finally:
        reader.close()


def test_few_and_many_uids_are_told_apart_alike(store: StoreServer) -> None:
    """Up to 16 UIDs the check reads their records, past that it tests the flag sets: both
    answer as StoreFlags then writes (the sets straddle the bound, the one changed message
    sits at either end)."""
    with store.client() as client:
        client.create_user("dy", "dy-secret")
        for i in range(20):
            client.append_bytes("dy", "INBOX", _message(i), flags=["\\Seen"] if i != 16 else [])
        epoch = client.epoch()
    reader = LocalReader(store.data_dir)
    try:
        with grpc.insecure_channel(store.address) as channel:
            stub = store_pb2_grpc.MailStoreStub(channel)
            mid = stub.Select(store_pb2.SelectRequest(user="dy", name="INBOX")).mailbox.mailbox_id
            add, remove = store_pb2.FLAG_MODE_ADD, store_pb2.FLAG_MODE_REMOVE

            def request(uid_set: str, mode: store_pb2.FlagMode.ValueType) -> store_pb2.StoreFlagsRequest:
                req = store_pb2.StoreFlagsRequest(epoch=epoch, user="dy", mailbox_id=mid, uid_set=uid_set, mode=mode)
                req.flags.append("\\Seen")
                return req

            cases = [
                ("1:16", True),  # 16 records, all seen
                ("1:17", False),  # 17 UIDs: the flag sets; 17 is unseen
                ("2:17", False),  # 16 records, the last unseen
                ("17", False),
                ("1:16,18:*", True),  # 19 UIDs, all seen
                ("1:*", False),
            ]
            for uid_set, unchanged in cases:
                stub.StoreFlags(request("17", remove))  # 17 unseen again (the last case may have set it)
                req = request(uid_set, add)
                local = reader.unchanged_by_store(req)
                reply = stub.StoreFlags(req)
                assert (local is not None) == unchanged == (not reply.updated), uid_set
            for uid_set in ("2:17", "1:*"):  # all seen now
                assert reader.unchanged_by_store(request(uid_set, add)) is not None, uid_set
    finally:
        reader.close()


def test_select_uid_lists_kept_between_selects_follow_every_write(store: StoreServer) -> None:
    """The reader keeps a mailbox's UID list while UIDVALIDITY and HIGHESTMODSEQ stand
    (store/uid_list_cache.py): after each write, its SELECT still equals the store's."""
    with store.client() as client:
        client.create_user("cy", "cy-secret")
        for i in range(6):
            client.append_bytes("cy", "INBOX", _message(i))
        epoch = client.epoch()
    reader = LocalReader(store.data_dir)
    try:
        with grpc.insecure_channel(store.address) as channel:
            stub = store_pb2_grpc.MailStoreStub(channel)
            mid = stub.Select(store_pb2.SelectRequest(user="cy", name="INBOX")).mailbox.mailbox_id
            stub.CreateMailbox(store_pb2.CreateMailboxRequest(epoch=epoch, user="cy", name="Other"))

            def same(name: str = "INBOX") -> list[int]:
                local = reader.select("cy", name)
                assert local == stub.Select(store_pb2.SelectRequest(user="cy", name=name))
                return list(local.uids)

            assert same() == [1, 2, 3, 4, 5, 6]
            assert same() == [1, 2, 3, 4, 5, 6]  # from the kept list
            assert len(reader.uid_lists) == 1
            flags = store_pb2.StoreFlagsRequest(
                epoch=epoch, user="cy", mailbox_id=mid, uid_set="2,4", mode=store_pb2.FLAG_MODE_ADD, flags=["\\Deleted"]
            )
            stub.StoreFlags(flags)
            assert same() == [1, 2, 3, 4, 5, 6]
            stub.Expunge(store_pb2.ExpungeRequest(epoch=epoch, user="cy", mailbox_id=mid))
            assert same() == [1, 3, 5, 6]
            with store.client() as client:
                client.append_bytes("cy", "INBOX", _message(7))
            assert same() == [1, 3, 5, 6, 7]
            stub.Move(store_pb2.CopyRequest(epoch=epoch, user="cy", mailbox_id=mid, uid_set="3", dest_mailbox="Other"))
            assert same() == [1, 5, 6, 7]
            assert same("Other") == [1]
            stub.Copy(
                store_pb2.CopyRequest(epoch=epoch, user="cy", mailbox_id=mid, uid_set="5:6", dest_mailbox="Other")
            )
            assert same("Other") == [1, 2, 3]
            # Deleted and created again: a new UIDVALIDITY, so nothing of the old list.
            stub.DeleteMailbox(store_pb2.DeleteMailboxRequest(epoch=epoch, user="cy", name="Other"))
            stub.CreateMailbox(store_pb2.CreateMailboxRequest(epoch=epoch, user="cy", name="Other"))
            assert same("Other") == []
            # RENAME of INBOX moves its messages out and leaves INBOX empty.
            stub.RenameMailbox(store_pb2.RenameMailboxRequest(epoch=epoch, user="cy", old_name="INBOX", new_name="Old"))
            assert same() == []
            assert same("Old") == [1, 2, 3, 4]
    finally:
        reader.close()


def test_uid_list_cache_is_bounded_and_checks_its_key() -> None:
    cache = UidListCache(max_bytes=100, max_entries=3)
    cache.put(1, 7, 10, b"a" * 40)
    assert cache.get(1, 7, 10) == b"a" * 40
    assert cache.get(1, 7, 11) is None and len(cache) == 0  # a newer HIGHESTMODSEQ: gone
    cache.put(1, 7, 11, b"a" * 40)
    assert cache.get(1, 8, 11) is None  # another UIDVALIDITY
    for mid in (1, 2, 3):
        cache.put(mid, 1, 1, b"b" * 30)
    assert cache.get(1, 1, 1) is not None  # 1 is now the most recently used
    cache.put(4, 1, 1, b"c" * 30)  # 120 bytes > 100: the least recently used (2) goes
    assert cache.get(2, 1, 1) is None and cache.bytes <= 100 and len(cache) <= 3
    cache.put(5, 1, 1, b"d" * 101)  # larger than the whole bound: not kept
    assert cache.get(5, 1, 1) is None
    cache.clear()
    assert len(cache) == 0 and cache.bytes == 0
