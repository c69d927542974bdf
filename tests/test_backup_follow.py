"""`mailha backup follow`: an incremental only when the store changed; the chain restores to the last one."""

from __future__ import annotations

import io
import pathlib
import subprocess
import sys

from backup import ops, repository
from backup.follow import Follower
from mailha_api import store_pb2
from tests.backup_mail import message, read_mailbox
from tests.store_fixtures import ROOT, StoreServer


def test_follow_makes_incrementals_only_for_changes_and_the_chain_restores(tmp_path: pathlib.Path) -> None:
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock").start()
    repo = tmp_path / "repo"
    follower = Follower(server.data_dir / "lmdb", repo)
    try:
        with server.client() as client:
            client.create_user("alice", "pw-alice-1")
            first = follower.step()
            assert first.created is not None and first.created.manifest.kind == "full"
            assert follower.step().created is None  # nothing changed
            client.append_bytes("alice", "INBOX", message("a"), ["\\Seen"])
            second = follower.step()
            assert second.created is not None and second.created.manifest.kind == "incremental"
            assert second.lag_seconds >= 0
            # A password change alters no mailbox: it is a committed write all the same.
            client.stub.SetPassword(
                store_pb2.SetPasswordRequest(epoch=client.epoch(), name="alice", password="pw-alice-2")
            )
            third = follower.step()
            assert third.created is not None
            assert follower.step().created is None
            live = read_mailbox(client, "alice", "INBOX")
            # The command line: two cycles, the second finds nothing new.
            argv = [sys.executable, "-m", "mailha.cli", "backup", "follow", str(repo)]
            argv += ["--store-dir", str(server.data_dir), "--interval", "0.1", "--cycles", "2"]
            done = subprocess.run(
                argv,
                check=False,
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            assert done.stdout.count("follow: ") == 2 and "no change" in done.stdout
    finally:
        server.stop()
    assert len(repository.chain(repository.latest(repo))) >= 3
    ops.run_restore(repo, tmp_path / "fresh" / "lmdb", out=io.StringIO())
    restored = StoreServer(tmp_path / "fresh", tmp_path / "fresh.sock").start()
    try:
        with restored.client() as client:
            assert read_mailbox(client, "alice", "INBOX") == live
            assert client.authenticate("alice", "pw-alice-2") == "alice"
    finally:
        restored.stop()
