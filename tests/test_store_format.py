"""The data format mark: a store or a reader beside it refuses data newer than it understands.

Format 2 keeps VANISHED tombstones as UID runs and a copy's extra body references in
`body_refs`; code that knew only format 1 would report one UID per run and free bodies
that still have copies. An older mark is raised to the current one on open.
"""

from __future__ import annotations

import pathlib

import lmdb
import pytest

from store.engine import MailStore, StoreOptions
from store.layout import lmdb_dir
from store.reader import LocalReader
from store.schema import FORMAT_KEY, FORMAT_VERSION, MAX_DBS, U64, FormatTooNew


def _mark(data: pathlib.Path, version: int) -> None:
    env = lmdb.open(str(lmdb_dir(data)), max_dbs=MAX_DBS, subdir=True)
    try:
        meta = env.open_db(b"meta", create=False)
        with env.begin(write=True) as txn:
            txn.put(FORMAT_KEY, U64.pack(version), db=meta)
    finally:
        env.close()


def _stored(data: pathlib.Path) -> int:
    env = lmdb.open(str(lmdb_dir(data)), max_dbs=MAX_DBS, subdir=True, readonly=True)
    try:
        meta = env.open_db(b"meta", create=False)
        with env.begin() as txn:
            raw = txn.get(FORMAT_KEY, db=meta)
        assert raw is not None
        return int(U64.unpack(raw)[0])
    finally:
        env.close()


def test_a_new_store_marks_its_format_and_raises_an_older_mark(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "s"
    MailStore(StoreOptions(data_dir=data)).close()
    assert _stored(data) == FORMAT_VERSION
    _mark(data, 1)
    MailStore(StoreOptions(data_dir=data)).close()
    assert _stored(data) == FORMAT_VERSION


def test_data_of_a_newer_format_is_refused_by_the_store_and_by_a_reader(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "s"
    MailStore(StoreOptions(data_dir=data)).close()
    _mark(data, FORMAT_VERSION + 1)
    with pytest.raises(FormatTooNew, match=f"data format {FORMAT_VERSION + 1}, newer"):
        MailStore(StoreOptions(data_dir=data))
    with pytest.raises(FormatTooNew):
        LocalReader(data)
    assert _stored(data) == FORMAT_VERSION + 1  # left as it was
