"""Expunged space is reused by LMDB, and `mailha store compact` gives it back to the file system (offline)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from mailha_api import store_pb2
from store import mailbox_index
from store.bodies import BodySource
from store.compaction import compact
from store.engine import MailStore, StoreOptions
from store.errors import FailedPrecondition
from tests.store_fixtures import ROOT


def _fill(store: MailStore, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        data = (f"Subject: message {n}\r\n\r\n" + f"line {n} of a body that is not tiny\r\n" * 60).encode()
        header = store_pb2.AppendHeader(epoch=1, user="alice", mailbox="INBOX", size=len(data))
        store.append(header, BodySource(len(data), data=data))


def _expunge_all(store: MailStore) -> None:
    mid = store.status("alice", "INBOX").mailbox_id
    store.store_flags(
        store_pb2.StoreFlagsRequest(
            epoch=1, user="alice", mailbox_id=mid, uid_set="1:*", mode=store_pb2.FLAG_MODE_ADD, flags=["\\Deleted"]
        )
    )
    store.expunge(store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=mid))


def _file(data: pathlib.Path) -> int:
    return (data / "lmdb" / "data.mdb").stat().st_size


def test_expunged_pages_are_reused_and_compaction_returns_them(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "s"
    # No full-text indexer: its read transactions would hold freed pages for a moment (LMDB
    # reuses a page only once no reader can still see it), which makes file sizes vary.
    store = MailStore(StoreOptions(data_dir=data, fulltext=False))
    store.fence(1)
    store.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="pw"))
    _fill(store, 600)
    _expunge_all(store)  # the expunge's own copy-on-write (and its tombstones) take new pages once
    freed = _file(data)
    _fill(store, 600, start=600)  # the same volume again: into the pages the expunge freed
    again = _file(data)
    assert again <= freed * 1.05, f"the file grew from {freed} to {again}: freed pages were not reused"
    _expunge_all(store)
    again = _file(data)
    with pytest.raises(FailedPrecondition, match="a store is running"):
        compact(data)  # the open store holds the directory lock
    store.close()
    result = compact(data)
    assert result.before_bytes == again
    assert result.after_bytes < again / 4
    assert not list(data.glob("lmdb.old-*"))
    store = MailStore(StoreOptions(data_dir=data))
    try:
        _fill(store, 3, start=2000)
        assert store.status("alice", "INBOX").status.messages == 3
        with store.env.begin() as txn:
            assert mailbox_index.disagreements(txn, store.dbs) == []
    finally:
        store.close()


def test_compact_command_refuses_a_running_store_and_reports_sizes(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "s"
    store = MailStore(StoreOptions(data_dir=data))
    argv = [sys.executable, "-m", "mailha.cli", "store", "compact", "--data", str(data), "--keep-old"]
    try:
        refused = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode == 1 and "stop it first" in refused.stderr
    finally:
        store.close()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "bytes in" in done.stdout, done.stderr
    assert len(list(data.glob("lmdb.old-*"))) == 1
