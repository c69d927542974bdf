"""Restoring one user (or one mailbox) into the running store; export -> import round trips."""

from __future__ import annotations

import io
import pathlib
import subprocess
import sys

from backup import ops
from backup.export import export_user
from importer.maildir import MaildirSource
from importer.mbox import MboxSource
from importer.progress import ImportReport, Progress
from importer.run import run_import
from importer.store_sink import StoreSink
from mailha_api import store_pb2
from store.client import StoreClient
from tests.backup_mail import Mail, mailbox_names, message, read_mailbox
from tests.store_fixtures import ROOT, StoreServer

DATE = 1_650_000_000


def _fill(client: StoreClient) -> None:
    for user in ("alice", "bob"):
        client.create_user(user, f"pw-{user}-1")
    epoch = client.epoch()
    client.stub.CreateMailbox(store_pb2.CreateMailboxRequest(epoch=epoch, user="alice", name="Lists/python.dev"))
    flag_sets = [["\\Seen"], ["\\Seen", "\\Flagged", "$Label1"], [], ["\\Answered", "\\Draft"], ["\\Deleted", "Junk"]]
    for n, flags in enumerate(flag_sets):
        client.append_bytes("alice", "INBOX", message(f"in{n}", 200 + n * 300), flags, internal_date=DATE + n * 3600)
        client.append_bytes("alice", "Lists/python.dev", message(f"li{n}"), flags[:1], internal_date=DATE - n)
    client.append_bytes("alice", "INBOX", message("big", 700_000) + b"From the start of a line\r\n", ["\\Seen"])
    client.append_bytes("bob", "INBOX", message("bob0"), ["\\Seen"], internal_date=DATE)


def _strip_uids(mails: list[Mail]) -> list[tuple[frozenset[str], int, bytes]]:
    return [(m.flags, m.internal_date, m.data) for m in mails]


def test_restore_one_user_into_the_running_store_without_touching_others(tmp_path: pathlib.Path) -> None:
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock").start()
    try:
        with server.client() as client:
            _fill(client)
            original = {name: read_mailbox(client, "alice", name)[1] for name in ("INBOX", "Lists/python.dev")}
            ops.create(ops.Source.store_dir(server.data_dir), tmp_path / "repo", since=None, keep=None)
            # The operator's mistake: a mailbox is deleted; bob goes on receiving mail meanwhile.
            epoch = client.epoch()
            client.stub.DeleteMailbox(
                store_pb2.DeleteMailboxRequest(epoch=epoch, user="alice", name="Lists/python.dev")
            )
            client.append_bytes("bob", "INBOX", message("bob1"), internal_date=DATE + 1)
            bob_before = read_mailbox(client, "bob", "INBOX")
            ops.restore_user(
                tmp_path / "repo",
                server.address,
                "alice",
                mailbox="Lists/python.dev",
                into="Restored/today",
                epoch=None,
                out=io.StringIO(),
            )
            assert _strip_uids(read_mailbox(client, "alice", "Restored/today/Lists/python.dev")[1]) == _strip_uids(
                original["Lists/python.dev"]
            )
            assert "Restored/today/INBOX" not in mailbox_names(client, "alice")
            # The whole user, through the command line, under the default Restored/<date>.
            cli = [sys.executable, "-m", "mailha.cli", "backup", "restore", str(tmp_path / "repo")]
            done = subprocess.run(
                [*cli, "--store", server.address, "--user", "alice"],
                check=False,
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            restored = [n for n in mailbox_names(client, "alice") if n.startswith("Restored/20")]
            base = restored[0].split("/")[:2]
            prefix = "/".join(base)
            for name, mails in original.items():
                assert _strip_uids(read_mailbox(client, "alice", f"{prefix}/{name}")[1]) == _strip_uids(mails), name
            assert read_mailbox(client, "bob", "INBOX") == bob_before
            assert mailbox_names(client, "bob") == {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}
    finally:
        server.stop()


def test_export_maildir_then_import_gives_the_same_messages_flags_and_dates(tmp_path: pathlib.Path) -> None:
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock").start()
    try:
        with server.client() as client:
            _fill(client)
            client.create_user("carol", "pw-carol-1")
            out = tmp_path / "maildir"
            report = export_user(client, "alice", "maildir", out, Progress(ImportReport(label="export"), io.StringIO()))
            assert report.messages == 11 and not report.notes
            assert (out / ".Lists.python&AC4-dev" / "cur").is_dir()
            assert oct(out.stat().st_mode & 0o777) == "0o700"
            run_import(MaildirSource(out), StoreSink(client, "carol", client.epoch()), out=io.StringIO())
            for name in ("INBOX", "Lists/python.dev"):
                want = sorted(_strip_uids(read_mailbox(client, "alice", name)[1]), key=lambda m: (m[1], m[2]))
                got = sorted(_strip_uids(read_mailbox(client, "carol", name)[1]), key=lambda m: (m[1], m[2]))
                assert got == want, name
    finally:
        server.stop()


def test_export_mbox_then_import_gives_the_same_messages_flags_and_dates(tmp_path: pathlib.Path) -> None:
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock").start()
    try:
        with server.client() as client:
            _fill(client)
            client.create_user("carol", "pw-carol-1")
            out = tmp_path / "mbox"
            cli = [sys.executable, "-m", "mailha.cli", "export", "mbox", str(out), "--user", "alice"]
            done = subprocess.run(
                [*cli, "--store", server.address], check=False, capture_output=True, text=True, cwd=ROOT, timeout=60
            )
            assert done.returncode == 0, done.stderr
            assert "export done in" in done.stderr
            exported = {str(p.relative_to(out)) for p in out.rglob("*.mbox")}
            assert exported == {f"{n}.mbox" for n in mailbox_names(client, "alice")}
            assert (out / "Sent.mbox").stat().st_size == 0
            for name, path in (("INBOX", "INBOX.mbox"), ("Lists/python.dev", "Lists/python.dev.mbox")):
                if name != "INBOX":
                    create = store_pb2.CreateMailboxRequest(epoch=client.epoch(), user="carol", name=name)
                    client.stub.CreateMailbox(create)
                sink = StoreSink(client, "carol", client.epoch())
                run_import(MboxSource(out / path, name), sink, out=io.StringIO())
                want = [(m.flags, m.internal_date, m.data) for m in read_mailbox(client, "alice", name)[1]]
                got = [(m.flags, m.internal_date, m.data) for m in read_mailbox(client, "carol", name)[1]]
                assert got == want, name
            assert b"X-Keywords: $Label1\r\n" in (out / "INBOX.mbox").read_bytes()
    finally:
        server.stop()


def test_export_refuses_a_directory_with_files(tmp_path: pathlib.Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    cli = [sys.executable, "-m", "mailha.cli", "export", "maildir", str(tmp_path / "out"), "--user", "alice"]
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock").start()
    try:
        done = subprocess.run(
            [*cli, "--store", server.address], check=False, capture_output=True, text=True, cwd=ROOT, timeout=60
        )
    finally:
        server.stop()
    assert done.returncode == 2 and "not empty" in done.stderr
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
