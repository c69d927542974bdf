"""A full disk is a temporary, clearly named failure; dead readers are reclaimed while running.

Both were found by the chaos suite (storage-full and kill-reader scenarios).
"""

from __future__ import annotations

import errno
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import lmdb
import pytest

from store.bodies import BodyWriter
from store.committer import Committer, WriteContext, is_disk_full
from store.environment import open_dbs
from store.errors import ErrorKind, StorageFull
from store.schema import MAX_DBS, Dbs


@pytest.fixture
def env_dbs(tmp_path: pathlib.Path) -> Iterator[tuple[lmdb.Environment, Dbs]]:
    env = lmdb.open(str(tmp_path / "env"), max_dbs=MAX_DBS, map_size=64 * 1024 * 1024, max_readers=64)
    try:
        yield env, open_dbs(env)
    finally:
        env.close()


def test_disk_full_is_recognised() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(lmdb.DiskError("mdb_txn_commit: No space left on device"))
    assert not is_disk_full(lmdb.Error("mdb_put: MDB_BAD_VALSIZE"))
    assert not is_disk_full(OSError(errno.EIO, "Input/output error"))


def test_disk_full_commit_fails_every_op_of_the_batch_as_storage_full(
    env_dbs: tuple[lmdb.Environment, Dbs],
) -> None:
    env, dbs = env_dbs
    committer = Committer(env, dbs, lambda events, tokens: None)

    def full(ctx: WriteContext) -> None:
        ctx.txn.put(b"k", b"v", db=dbs.meta)
        raise lmdb.DiskError("mdb_txn_commit: No space left on device")

    committer.start()
    try:
        future = committer.submit(None, full)
        with pytest.raises(StorageFull) as caught:
            future.result(5)
        assert caught.value.kind is ErrorKind.RESOURCE_EXHAUSTED
        assert caught.value.message.startswith("storage:")
        # The committer lives on and nothing of the failed op was written.
        assert committer.submit(None, lambda ctx: ctx.txn.put(b"ok", b"1", db=dbs.meta)).result(5)
        with env.begin(db=dbs.meta) as txn:
            assert txn.get(b"k") is None
            assert txn.get(b"ok") == b"1"
    finally:
        committer.stop()


def test_spool_on_a_full_disk_raises_storage_full_and_leaves_no_file(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = BodyWriter(tmp_path)
    writer.write(b"x" * (2 * 1024 * 1024))  # past the spool threshold: now on disk
    assert list(tmp_path.iterdir())

    def no_space(data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    spool = writer._file
    assert spool is not None
    monkeypatch.setattr(spool, "write", no_space)
    with pytest.raises(StorageFull, match="storage:"):
        writer.write(b"y" * 1024)
    assert list(tmp_path.iterdir()) == []


_READER = """
import lmdb, sys, time
env = lmdb.open(sys.argv[1], max_dbs=64, map_size=64 * 1024 * 1024, max_readers=64)
txn = env.begin()
print("reading", flush=True)
time.sleep(60)
"""


def test_committer_reclaims_reader_slots_of_dead_processes(
    env_dbs: tuple[lmdb.Environment, Dbs], tmp_path: pathlib.Path
) -> None:
    env, dbs = env_dbs
    reader = subprocess.Popen([sys.executable, "-c", _READER, str(tmp_path / "env")], stdout=subprocess.PIPE)
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == b"reading"
        assert f"{reader.pid}" in env.readers()
        os.kill(reader.pid, signal.SIGKILL)
        reader.wait(5)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
        if reader.stdout is not None:
            reader.stdout.close()
    # The slot is still held by the dead pid until someone runs a reader check.
    assert f"{reader.pid}" in env.readers()
    committer = Committer(env, dbs, lambda events, tokens: None)
    committer.start()
    try:
        deadline = time.monotonic() + 10
        while f"{reader.pid}" in env.readers() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert f"{reader.pid}" not in env.readers(), env.readers()
    finally:
        committer.stop()
