"""`mailha backup verify`: checksums, chain links, body reference counts, every message readable.

Each damage is made on purpose and must be reported, naming the file.
"""

from __future__ import annotations

import dataclasses
import io
import json
import pathlib
import shutil
import subprocess
import sys

import lmdb
import pytest

from backup import ops, repository
from backup.create import Created
from backup.files import sha256_file
from backup.manifest import MANIFEST
from backup.status import read_status
from backup.verify import verify
from mailha_api import store_pb2
from store.bodies import extra_references, reference_count
from store.schema import BODY_META, MAX_DBS, U64
from tests.backup_mail import message
from tests.store_fixtures import ROOT, StoreServer


@pytest.fixture(scope="module")
def pristine_chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Created, Created]:
    """A full backup and an incremental of a small store, made once; each test damages a copy."""
    tmp_path = tmp_path_factory.mktemp("chain")
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock").start()
    repo = tmp_path / "repo"
    try:
        with server.client() as client:
            client.create_user("alice", "pw-alice-1")
            for n in range(6):
                client.append_bytes("alice", "INBOX", message(f"m{n}", 300_000 if n == 0 else 500), ["\\Seen"])
            mid = client.mailbox_id("alice", "INBOX")
            copy = store_pb2.CopyRequest(
                epoch=client.epoch(), user="alice", mailbox_id=mid, uid_set="1", dest_mailbox="Archive"
            )
            client.stub.Copy(copy)
            full = ops.create(ops.Source.store_dir(server.data_dir), repo, since=None, keep=None)
            for n in range(3):
                client.append_bytes("alice", "Sent", message(f"s{n}", 400_000))
            incremental = ops.create(ops.Source.store_dir(server.data_dir), repo, since="latest", keep=None)
    finally:
        server.stop()
    return full, incremental


@pytest.fixture
def chain_of_two(pristine_chain: tuple[Created, Created], tmp_path: pathlib.Path) -> tuple[Created, Created]:
    full, incremental = pristine_chain
    repo = shutil.copytree(full.path.parent, tmp_path / "repo")
    return (
        dataclasses.replace(full, path=repo / full.path.name),
        dataclasses.replace(incremental, path=repo / incremental.path.name),
    )


def _flip(path: pathlib.Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x55
    path.write_bytes(bytes(data))


def test_good_chain_verifies_and_checks_every_message(chain_of_two: tuple[Created, Created]) -> None:
    full, incremental = chain_of_two
    report = verify(incremental.path)
    assert report.ok, report.problems
    assert report.members == 2
    assert report.messages == incremental.manifest.messages == 10
    assert verify(full.path).ok


def test_flipped_byte_in_the_full_copy_is_reported_by_name(chain_of_two: tuple[Created, Created]) -> None:
    full, incremental = chain_of_two
    data = full.path / "lmdb" / "data.mdb"
    _flip(data, data.stat().st_size // 2)
    for target in (full.path, incremental.path):
        report = verify(target)
        assert not report.ok
        assert any(str(data) in p and "damaged" in p for p in report.problems), report.problems


def test_damaged_or_cut_off_delta_is_reported_by_name(chain_of_two: tuple[Created, Created]) -> None:
    _, incremental = chain_of_two
    delta = incremental.path / "delta.bin"
    original = delta.read_bytes()
    _flip(delta, len(original) // 3)
    report = verify(incremental.path)
    assert any(str(delta) in p and "damaged" in p for p in report.problems), report.problems
    delta.write_bytes(original[: len(original) // 2])
    report = verify(incremental.path)
    assert any(str(delta) in p and "bytes, the manifest says" in p for p in report.problems), report.problems


def test_missing_parent_and_replaced_parent_manifest_break_the_chain(chain_of_two: tuple[Created, Created]) -> None:
    full, incremental = chain_of_two
    manifest = full.path / MANIFEST
    data = json.loads(manifest.read_bytes())
    data["epoch"] += 1
    manifest.write_text(json.dumps(data))
    report = verify(incremental.path)
    assert any(str(manifest) in p and "differs from what" in p for p in report.problems), report.problems
    shutil.rmtree(full.path)
    report = verify(incremental.path)
    assert any(full.path.name in p and "missing" in p for p in report.problems), report.problems


def test_wrong_reference_count_is_found_even_with_matching_checksums(chain_of_two: tuple[Created, Created]) -> None:
    full, _ = chain_of_two
    env_dir = full.path / "lmdb"
    env = lmdb.open(str(env_dir), max_dbs=MAX_DBS)
    with env.begin(write=True) as txn:
        body_meta = env.open_db(b"body_meta", txn=txn, create=False)
        body_refs = env.open_db(b"body_refs", txn=txn, create=False)
        found = txn.get(U64.pack(1), db=body_meta)
        assert found is not None
        refs, _size = BODY_META.unpack_from(bytes(found))
        assert reference_count(refs) == 1
        assert extra_references(txn, body_refs, 1) == 1  # the COPY shares the first body
        txn.delete(U64.pack(1), db=body_refs)  # as a bug forgetting the copy's reference would
    env.close()
    (env_dir / "lock.mdb").unlink()
    # Re-sign the manifest, as a bug writing a wrong count would have.
    manifest = json.loads((full.path / MANIFEST).read_bytes())
    manifest["files"][0]["size"] = (env_dir / "data.mdb").stat().st_size
    manifest["files"][0]["sha256"] = sha256_file(env_dir / "data.mdb")
    (full.path / MANIFEST).write_text(json.dumps(manifest))
    report = verify(full.path)
    assert report.problems == ["body 1: reference count 1, used by 2 messages"]


def test_unlisted_file_is_reported(chain_of_two: tuple[Created, Created]) -> None:
    full, _ = chain_of_two
    (full.path / "lmdb" / "stray.bin").write_bytes(b"x")
    report = verify(full.path)
    assert any("stray.bin: not listed" in p for p in report.problems)


def test_cli_verify_exit_status_and_list(chain_of_two: tuple[Created, Created]) -> None:
    full, incremental = chain_of_two
    repo = incremental.path.parent
    cli = [sys.executable, "-m", "mailha.cli", "backup"]
    ok = subprocess.run([*cli, "verify", str(repo)], check=False, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "OK; chain of 2, 10 messages" in ok.stdout
    listed = subprocess.run(
        [*cli, "list", str(repo)], check=False, capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert full.path.name in listed.stdout and f"after {full.path.name}" in listed.stdout
    _flip(incremental.path / "delta.bin", 20)
    bad = subprocess.run(
        [*cli, "verify", str(incremental.path)], check=False, capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert bad.returncode == 1
    assert "DAMAGED" in bad.stdout and "delta.bin: damaged" in bad.stdout


def test_verify_result_is_recorded_for_the_console_and_a_damaged_backup_shows_so(
    chain_of_two: tuple[Created, Created],
) -> None:
    full, incremental = chain_of_two
    repo = incremental.path.parent
    status = read_status(repo)
    assert status is not None
    assert (status.name, status.kind, status.verified) == (incremental.path.name, "incremental", None)
    assert status.stored_bytes == incremental.manifest.stored_bytes
    assert ops.run_verify(repo, out=io.StringIO()).ok
    status = read_status(repo)
    assert status is not None and status.verified is True and status.verify_time is not None
    delta = incremental.path / "delta.bin"
    _flip(delta, delta.stat().st_size // 3)
    assert not ops.run_verify(repo, out=io.StringIO()).ok
    status = read_status(repo)
    assert status is not None and status.verified is False
    # A verify of the older full backup says nothing about the newest one.
    assert ops.run_verify(full.path, out=io.StringIO()).ok
    status = read_status(repo)
    assert status is not None and status.verified is None
    values = repository.read_metrics(repo)
    assert values["mailha_backup_last_verify_success"] == 1.0
    verified_at = values["mailha_backup_last_verify_backup_timestamp_seconds"]
    assert verified_at == pytest.approx(full.manifest.created, abs=1e-3)
