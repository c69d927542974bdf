"""Backups of a store under write load: full, more writes, incremental, storage destroyed, restored.

The done-when test of issue 16: APPENDs (a thread over a real store client)
and LMTP deliveries (a thread through a real lmtpd) run during the full
backup and after it; the incremental is taken; the
data directory is deleted; full + incremental are restored into a fresh
directory and a store is started on it. Every message acknowledged before
the incremental began must be there exactly once, with its UID and flags.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import smtplib
import stat
import subprocess
import sys
import threading
import time

import lmdb

from backup import ops, repository
from backup.errors import BackupError
from backup.manifest import read_manifest
from backup.verify import verify
from lmtpd.local_servers import start_lmtpd, stop
from mailha_api import store_pb2
from nodeconf.config import load
from store.client import StoreClient
from tests.backup_mail import Mail, expunge, mailbox_names, message, read_mailbox, set_flags
from tests.store_fixtures import ROOT, StoreServer

BIG = 600 * 1024  # three body chunks


class Appender(threading.Thread):
    """Appends to alice's INBOX until stopped (bounded); records what the store acknowledged."""

    def __init__(self, address: str, limit: int = 3000) -> None:
        super().__init__(name="appender", daemon=True)
        self.client = StoreClient(address)
        self.limit = limit
        self.stop = threading.Event()
        self.acked: list[tuple[int, str, frozenset[str]]] = []  # uid, tag, flags
        self.lock = threading.Lock()
        self.error: BaseException | None = None

    def run(self) -> None:
        epoch = self.client.epoch()
        try:
            for n in range(self.limit):
                if self.stop.is_set():
                    return
                tag = f"load-{n}"
                flags = ["\\Seen"] if n % 3 == 0 else []
                reply = self.client.append_bytes("alice", "INBOX", message(tag), flags, epoch)
                with self.lock:
                    self.acked.append((reply.uid, tag, frozenset(flags)))
        except BaseException as exc:
            self.error = exc
        finally:
            self.client.close()

    def snapshot(self) -> list[tuple[int, str, frozenset[str]]]:
        with self.lock:
            return list(self.acked)

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.snapshot()) < count:
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"appender reached only {len(self.snapshot())} of {count}"
            time.sleep(0.02)


class Deliverer(threading.Thread):
    """Delivers to bob over LMTP (a real lmtpd) until stopped (bounded); records the accepted tags."""

    def __init__(self, port: int, limit: int = 2000) -> None:
        super().__init__(name="deliverer", daemon=True)
        self.port = port
        self.limit = limit
        self.stop = threading.Event()
        self.accepted: list[str] = []
        self.lock = threading.Lock()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with smtplib.LMTP("127.0.0.1", self.port) as lmtp:
                for n in range(self.limit):
                    if self.stop.is_set():
                        return
                    tag = f"lmtp-{n}"
                    lmtp.sendmail("sender@example.org", ["bob@d.test"], message(tag))  # raises unless 250
                    with self.lock:
                        self.accepted.append(tag)
        except BaseException as exc:
            self.error = exc

    def snapshot(self) -> list[str]:
        with self.lock:
            return list(self.accepted)


def _tag(mail: Mail) -> str:
    return mail.data.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode()


def _setup_users(client: StoreClient) -> None:
    client.create_user("alice", "pw-alice-1")
    client.create_user("bob", "pw-bob-1")
    epoch = client.epoch()
    for name in ("Work", "Work/Projects", "Old", "Gone"):
        client.stub.CreateMailbox(store_pb2.CreateMailboxRequest(epoch=epoch, user="alice", name=name))
    for n in range(5):
        client.append_bytes(
            "alice", "Work/Projects", message(f"proj-{n}"), ["\\Flagged"], internal_date=1_700_000_000 + n
        )
        client.append_bytes("alice", "Gone", message(f"gone-{n}"))
        client.append_bytes("bob", "INBOX", message(f"bob-{n}"), ["\\Seen", "$Label1"])
    client.append_bytes("alice", "Old", message("big-before", BIG), ["\\Answered"])
    client.stub.AddAddress(store_pb2.AddAddressRequest(epoch=epoch, address="bob@d.test", user="bob"))
    # A COPY shares the body: its reference count is 2.
    mid = client.mailbox_id("alice", "Work/Projects")
    client.stub.Copy(
        store_pb2.CopyRequest(epoch=epoch, user="alice", mailbox_id=mid, uid_set="1:2", dest_mailbox="Old")
    )


def test_full_and_incremental_under_write_load_restore_after_storage_loss(tmp_path: pathlib.Path) -> None:
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock").start()
    repo = tmp_path / "backups"
    appender = Appender(server.address)
    lmtp_port, lmtpd = start_lmtpd(tmp_path, server.address, 1, max_message_size=1 << 20)
    deliverer = Deliverer(lmtp_port)
    try:
        with server.client() as client:
            _setup_users(client)
            appender.start()
            deliverer.start()
            appender.wait_for(30)
            full = ops.create(ops.Source.store_dir(server.data_dir), repo, since=None, keep=None)
            in_full = len(appender.snapshot())
            appender.wait_for(in_full + 40)
            # Changes between the two backups: flags, expunges, a rename, a delete, a new mailbox,
            # a big message, a copy across mailboxes.
            epoch = client.epoch()
            set_flags(client, "alice", "INBOX", "1:10", ["\\Flagged"])
            set_flags(client, "bob", "INBOX", "2", ["\\Answered"])
            expunge(client, "alice", "INBOX", "11:14")
            expunge(client, "alice", "Work/Projects", "5")
            client.stub.RenameMailbox(
                store_pb2.RenameMailboxRequest(epoch=epoch, user="alice", old_name="Work", new_name="Jobs")
            )
            client.stub.DeleteMailbox(store_pb2.DeleteMailboxRequest(epoch=epoch, user="alice", name="Gone"))
            client.stub.CreateMailbox(store_pb2.CreateMailboxRequest(epoch=epoch, user="alice", name="New"))
            client.append_bytes("alice", "New", message("big-after", BIG), ["\\Draft"], internal_date=1_600_000_000)
            old_mid = client.mailbox_id("alice", "Old")
            client.stub.Copy(
                store_pb2.CopyRequest(epoch=epoch, user="alice", mailbox_id=old_mid, uid_set="1", dest_mailbox="New")
            )
            acked_before_incremental = appender.snapshot()
            delivered_before_incremental = deliverer.snapshot()
            live_before = {name: read_mailbox(client, "alice", name) for name in ("Jobs/Projects", "Old", "New")}
            live_bob = read_mailbox(client, "bob", "INBOX")
            inbox_uidvalidity = client.stub.Status(
                store_pb2.StatusRequest(user="alice", name="INBOX")
            ).status.uidvalidity
            incremental = ops.create(ops.Source.store_dir(server.data_dir), repo, since="latest", keep=None)
            appender.wait_for(len(acked_before_incremental) + 10)
    finally:
        appender.stop.set()
        deliverer.stop.set()
        appender.join(timeout=30)
        deliverer.join(timeout=30)
        stop(lmtpd)
        server.stop()
    assert appender.error is None, appender.error
    assert deliverer.error is None, deliverer.error
    assert len(delivered_before_incremental) > 0
    assert incremental.manifest.parent == full.path.name
    # The incremental holds the changes only: unchanged messages and old bodies are not in it.
    stats = incremental.manifest.stats
    assert stats["messages_written"] < incremental.manifest.messages - 20
    # New bodies: one per append since the full backup (growth + 5 expunged + 5 in Gone - 1 copy), none older.
    growth = incremental.manifest.messages - full.manifest.messages
    assert 1 <= stats["bodies_written"] <= growth + 9

    # Backups are private, and verify (read-only) passes on the chain.
    for path in [repo, *repo.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    report = verify(incremental.path)
    assert report.ok, report.problems
    assert report.members == 2

    # The shared storage is lost.
    shutil.rmtree(server.data_dir)
    fresh = tmp_path / "fresh"
    ops.run_restore(repo, fresh / "lmdb")
    restored = StoreServer(fresh, tmp_path / "fresh.sock").start()
    try:
        with restored.client() as client:
            uidvalidity, inbox = read_mailbox(client, "alice", "INBOX")
            by_tag: dict[str, list[Mail]] = {}
            for mail in inbox:
                by_tag.setdefault(_tag(mail), []).append(mail)
            expunged = set(range(11, 15))
            for uid, tag, flags in acked_before_incremental:
                if uid in expunged:
                    assert tag not in by_tag, f"{tag} (UID {uid}) was expunged before the incremental"
                    continue
                found = by_tag.get(tag, [])
                assert len(found) == 1, f"{tag}: present {len(found)} times"
                want = flags | ({"\\Flagged"} if uid <= 10 else set())
                assert found[0].uid == uid and found[0].flags == want, (tag, found[0], want)
                assert found[0].data == message(tag)
            # Messages acknowledged after the incremental began may or may not be there, never twice.
            assert all(len(v) == 1 for v in by_tag.values())
            assert uidvalidity == inbox_uidvalidity
            assert mailbox_names(client, "alice") >= {"INBOX", "Jobs", "Jobs/Projects", "Old", "New"}
            assert "Gone" not in mailbox_names(client, "alice") and "Work" not in mailbox_names(client, "alice")
            for name, live in live_before.items():
                assert read_mailbox(client, "alice", name) == live, name
            # bob's INBOX: as before the incremental, plus deliveries that came in meanwhile;
            # every delivery accepted before the incremental is there exactly once.
            bob_uidvalidity, bob_inbox = read_mailbox(client, "bob", "INBOX")
            assert bob_uidvalidity == live_bob[0] and bob_inbox[: len(live_bob[1])] == live_bob[1]
            delivered = [_tag(m) for m in bob_inbox if _tag(m).startswith("lmtp-")]
            assert len(delivered) == len(set(delivered))
            assert set(delivered_before_incremental) <= set(delivered)
            assert all(not m.flags for m in bob_inbox if _tag(m).startswith("lmtp-"))
            assert client.authenticate("bob", "pw-bob-1") == "bob"
            # The restored store takes writes (its epoch was raised by --fence-next).
            reply = client.append_bytes("alice", "INBOX", message("after-restore"))
            assert reply.uid > max(uid for uid, _, _ in acked_before_incremental)
    finally:
        restored.stop()
    manifest, _ = read_manifest(incremental.path)
    assert manifest.epoch >= 1


def test_restore_refuses_a_data_directory_that_is_not_empty(tmp_path: pathlib.Path) -> None:
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock").start()
    try:
        with server.client() as client:
            client.create_user("alice", "pw-alice-1")
        ops.create(ops.Source.store_dir(server.data_dir), tmp_path / "repo", since=None, keep=None)
    finally:
        server.stop()
    try:
        ops.run_restore(tmp_path / "repo", server.data_dir / "lmdb")
    except BackupError as exc:
        assert "not empty" in str(exc)
    else:
        raise AssertionError("restore over a live store directory was not refused")
    assert (server.data_dir / "lmdb" / "data.mdb").stat().st_size > 0


def test_half_written_backup_is_never_taken_and_retention_keeps_n(tmp_path: pathlib.Path) -> None:
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock").start()
    repo = tmp_path / "repo"
    try:
        with server.client() as client:
            client.create_user("alice", "pw-alice-1")
            first = ops.create(ops.Source.store_dir(server.data_dir), repo, since=None, keep=None)
            # A crash in the middle of a backup leaves a .tmp- directory: never "latest".
            (repo / ".tmp-20991231T000000.000000Z-full").mkdir(mode=0o700)
            assert repository.latest(repo) == first.path
            client.append_bytes("alice", "INBOX", message("x"))
            ops.create(ops.Source.store_dir(server.data_dir), repo, since="latest", keep=None)
            second = ops.create(ops.Source.store_dir(server.data_dir), repo, since=None, keep=None)
            third = ops.create(ops.Source.store_dir(server.data_dir), repo, since=None, keep=2)
    finally:
        server.stop()
    # The next run cleaned the leftover; keep=2 removed the first full and its incremental.
    assert sorted(p.name for p in repo.iterdir() if not p.name.startswith(".")) == sorted(
        [second.path.name, third.path.name, repository.METRIC_FILE]
    )
    metrics = (repo / repository.METRIC_FILE).read_text()
    assert f"mailha_backup_last_success_timestamp_seconds {third.manifest.created:.3f}" in metrics
    assert "mailha_backup_last_run_success 1.000" in metrics
    assert os.stat(repo / repository.METRIC_FILE).st_mode & 0o777 == 0o600


def test_cli_create_on_a_standalone_data_dir_and_a_clear_error_for_a_bad_since(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "standalone"  # `mailha standalone --data` keeps the store in DATA/store
    data.mkdir()
    server = StoreServer(data / "store", tmp_path / "store.sock").start()
    repo = tmp_path / "repo"
    textfile = tmp_path / "node-exporter-textfile"  # node_exporter's --collector.textfile.directory
    textfile.mkdir()
    cli = [sys.executable, "-m", "mailha.cli", "backup", "create", str(repo), "--data", str(data)]
    cli += ["--metrics-file", str(textfile / "mailha_backup.prom")]
    try:
        with server.client() as client:
            client.create_user("alice", "pw-alice-1")
            client.append_bytes("alice", "INBOX", message("one"))
        done = subprocess.run(cli, check=False, capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert done.returncode == 0, done.stderr
        assert re.search(r"full backup .* 1 messages in 6 mailboxes, .* written \([\d.]+ \S+/s\)", done.stdout)
        bad = subprocess.run(
            [*cli, "--since", str(tmp_path / "nothing-here")],
            check=False,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
    finally:
        server.stop()
    assert bad.returncode == 2
    assert "mailha backup create:" in bad.stderr and "nothing-here" in bad.stderr and "Traceback" not in bad.stderr
    assert not (repo / repository.METRIC_FILE).exists()
    metrics = (textfile / "mailha_backup.prom").read_text()
    assert (textfile / "mailha_backup.prom").stat().st_mode & 0o777 == 0o644  # node_exporter reads it
    assert "mailha_backup_last_run_success 0.000" in metrics  # the failed run is visible ...
    assert 'mailha_backup_last_success_timestamp_seconds{kind="full"}' in metrics  # ... the last good one too


def test_cluster_config_names_the_shared_storage(tmp_path: pathlib.Path) -> None:
    source = ops.Source.cluster(ROOT / "cluster.yaml")
    assert source.lmdb_dir == load(ROOT / "cluster.yaml").storage.path / "store" / "lmdb"


def test_incremental_after_the_store_was_restored_from_an_older_backup(tmp_path: pathlib.Path) -> None:
    """A store restored from an older backup repeats body ids and modseqs: the chain must restart."""
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock").start()
    repo = tmp_path / "repo"
    try:
        with server.client() as client:
            client.create_user("alice", "pw-alice-1")
            client.append_bytes("alice", "INBOX", message("a"))
            old = ops.create(ops.Source.store_dir(server.data_dir), repo, since=None, keep=None)
            for n in range(5):
                client.append_bytes("alice", "INBOX", message(f"later-{n}"))
            set_flags(client, "alice", "INBOX", "1:*", ["\\Flagged"])
            ops.create(ops.Source.store_dir(server.data_dir), repo, since="latest", keep=None)
    finally:
        server.stop()
    shutil.rmtree(server.data_dir)
    ops.run_restore(old.path, server.data_dir / "lmdb")  # the older state: INBOX has one message
    server = StoreServer(server.data_dir, tmp_path / "store2.sock").start()
    try:
        with server.client() as client:
            client.append_bytes("alice", "INBOX", message("after-restore"), ["\\Seen"])
            live = read_mailbox(client, "alice", "INBOX")
            # Its body id and modseqs repeat values the chain already holds for other messages.
            try:
                ops.create(ops.Source.store_dir(server.data_dir), repo, since="latest", keep=None)
            except BackupError as exc:
                assert "restored from a backup" in str(exc) and "make a full backup" in str(exc)
            else:
                raise AssertionError("an incremental across a restore was not refused")
            newest = ops.create(ops.Source.store_dir(server.data_dir), repo, since=None, keep=None)
            client.append_bytes("alice", "INBOX", message("after-full"))
            live_after = read_mailbox(client, "alice", "INBOX")
            last = ops.create(ops.Source.store_dir(server.data_dir), repo, since="latest", keep=None)
    finally:
        server.stop()
    assert newest.manifest.lineage and last.manifest.lineage == newest.manifest.lineage
    assert len(live[1]) == 2 and verify(last.path).ok
    fresh = tmp_path / "fresh"
    ops.run_restore(last.path, fresh / "lmdb")
    restored = StoreServer(fresh, tmp_path / "fresh.sock").start()
    try:
        with restored.client() as client:
            assert read_mailbox(client, "alice", "INBOX") == live_after
    finally:
        restored.stop()


def test_a_database_added_later_is_carried_with_its_flags(tmp_path: pathlib.Path) -> None:
    """Named databases are found, not listed: one another feature adds (here with duplicates) is restored."""
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock").start()
    repo = tmp_path / "repo"
    try:
        with server.client() as client:
            client.create_user("alice", "pw-alice-1")
        ops.create(ops.Source.store_dir(server.data_dir), repo, since=None, keep=None)
        # Another process adds a database beside the running store (LMDB allows it).
        env = lmdb.open(str(server.data_dir / "lmdb"), max_dbs=64)
        try:
            index = env.open_db(b"future_index", dupsort=True)
            with env.begin(write=True) as txn:
                for value in (b"1", b"2", b"3"):
                    txn.put(b"term", value, db=index)
        finally:
            env.close()
        incremental = ops.create(ops.Source.store_dir(server.data_dir), repo, since="latest", keep=None)
    finally:
        server.stop()
    assert incremental.manifest.databases["future_index"] == 3
    ops.run_restore(repo, tmp_path / "fresh" / "lmdb")
    restored = lmdb.open(str(tmp_path / "fresh" / "lmdb"), max_dbs=64, readonly=True, lock=False)
    try:
        with restored.begin() as txn:
            index = restored.open_db(b"future_index", txn=txn, create=False)
            assert [(bytes(k), bytes(v)) for k, v in txn.cursor(db=index)] == [
                (b"term", b"1"),
                (b"term", b"2"),
                (b"term", b"3"),
            ]
        assert index.flags()["dupsort"] is True
    finally:
        restored.close()


def test_a_parent_deleted_to_noselect_loses_its_tombstones_in_the_restore(tmp_path: pathlib.Path) -> None:
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock").start()
    repo = tmp_path / "repo"
    try:
        with server.client() as client:
            client.create_user("alice", "pw-alice-1")
            epoch = client.epoch()
            client.stub.CreateMailbox(store_pb2.CreateMailboxRequest(epoch=epoch, user="alice", name="P/C"))
            for n in range(3):
                client.append_bytes("alice", "P", message(f"p{n}"))
            expunge(client, "alice", "P", "1")  # a tombstone
            mid = client.mailbox_id("alice", "P")
            ops.create(ops.Source.store_dir(server.data_dir), repo, since=None, keep=None)
            client.stub.DeleteMailbox(store_pb2.DeleteMailboxRequest(epoch=epoch, user="alice", name="P"))
            vanished = store_pb2.VanishedRequest(user="alice", mailbox_id=mid, since_modseq=0)
            assert list(client.stub.Vanished(vanished).uids) == []  # the store purged them
            ops.create(ops.Source.store_dir(server.data_dir), repo, since="latest", keep=None)
    finally:
        server.stop()
    ops.run_restore(repo, tmp_path / "fresh" / "lmdb")
    restored = StoreServer(tmp_path / "fresh", tmp_path / "fresh.sock").start()
    try:
        with restored.client() as client:
            assert list(client.stub.Vanished(vanished).uids) == []
            assert "P" not in mailbox_names(client, "alice") and "P/C" in mailbox_names(client, "alice")
    finally:
        restored.stop()
