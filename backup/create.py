"""Making a backup: a compacted LMDB copy (full) or the changes since the last one (incremental).

Both read one LMDB read transaction: the manifest and the data come from the
same snapshot, and the store's writers are not paused (LMDB copies from a
read transaction without taking the writer lock; the cost to writers is only
that pages freed meanwhile are reused after the copy ends).
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import lmdb

from backup import files, snapshot
from backup.delta_format import DeltaWriter, uid_ranges
from backup.errors import BackupError
from backup.manifest import FULL, INCREMENTAL, MANIFEST, FileEntry, MailboxState, Manifest
from backup.repository import Member, new_name
from store.schema import MSG_KEY, U64, VANISHED_KEY, MessageRecord

# The databases an incremental carries as changes; every other one is copied whole.
# `deleted` is an index the restore rebuilds from the messages.
DELTA_DBS = frozenset({"messages", "vanished", "body_meta", "body_chunks", "deleted"})

Tick = Callable[[int], None]  # bytes done since the last call


@dataclass(frozen=True)
class Created:
    path: pathlib.Path
    manifest: Manifest
    seconds: float


def _file_entry(root: pathlib.Path, path: pathlib.Path, tick: Tick | None) -> FileEntry:
    return FileEntry(str(path.relative_to(root)), path.stat().st_size, files.sha256_file(path, tick))


def _finish(tmp: pathlib.Path, final: pathlib.Path, manifest: Manifest) -> None:
    files.write_private(tmp / MANIFEST, manifest.to_json())
    files.seal_directory(tmp, final)


def create_full(
    lmdb_dir: pathlib.Path, repo: pathlib.Path, *, tick: Tick | None = None, max_rate: float | None = None
) -> Created:
    """A compacted copy of the whole environment with its manifest, written atomically into `repo`.

    `max_rate` (bytes/s) caps the write rate, to leave the disk to a busy store.
    """
    started = time.monotonic()
    env = snapshot.open_live(lmdb_dir)
    try:
        name = new_name(FULL)
        tmp = files.private_dir(repo / f"{files.TMP_PREFIX}{name}")
        copy_dir = files.private_dir(tmp / "lmdb")
        target = copy_dir / "data.mdb"
        with snapshot.read_snapshot(env) as txn:
            state = snapshot.read_state(env, txn)
            digest = _copy_through_pipe(env, txn, target, tick, max_rate)
        entry = FileEntry(str(target.relative_to(tmp)), target.stat().st_size, digest)
        copied = time.monotonic()
        manifest = Manifest(
            kind=FULL,
            name=name,
            created=state.created,
            epoch=state.epoch,
            next_body_id=state.next_body_id,
            mailboxes=state.mailboxes,
            files=(entry,),
            databases=state.databases,
            lineage=state.lineage,
            stats={"copy_seconds": round(copied - started, 3), "bytes": entry.size},
        )
        _finish(tmp, repo / name, manifest)
        return Created(repo / name, manifest, time.monotonic() - started)
    finally:
        env.close()


def _copy_through_pipe(
    env: lmdb.Environment, txn: lmdb.Transaction, target: pathlib.Path, tick: Tick | None, max_rate: float | None
) -> str:
    """env.copyfd into a pipe (it runs without the GIL in a thread); written here paced, hashed on the way.

    Returns the sha256: the copy is never read back.
    """
    read_fd, write_fd = os.pipe()
    try:
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, files.READ_PIECE)  # fewer, larger reads
    except OSError:
        pass  # above /proc/sys/fs/pipe-max-size: the default size works too
    failure: list[BaseException] = []

    def copy() -> None:
        try:
            env.copyfd(write_fd, compact=True, txn=txn)
        except BaseException as exc:
            failure.append(exc)
        finally:
            os.close(write_fd)

    writer = files.PacedWriter(target, tick, max_rate=max_rate)
    copier = threading.Thread(target=copy, name="backup-copy", daemon=True)
    copier.start()
    try:
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            while piece := pipe.read(files.READ_PIECE):
                writer.write(piece)
    finally:
        copier.join()
        digest = writer.close()
    if failure:
        raise BackupError(f"copying the environment failed: {failure[0]}")
    return digest


def create_incremental(
    lmdb_dir: pathlib.Path, repo: pathlib.Path, previous: Member, *, tick: Tick | None = None
) -> Created:
    """What changed since `previous` (the last member of a chain), as a delta file."""
    if previous.path.parent.resolve() != repo.resolve():
        raise BackupError(f"--since {previous.path} is not in the repository {repo}")
    started = time.monotonic()
    env = snapshot.open_live(lmdb_dir)
    try:
        name = new_name(INCREMENTAL)
        tmp = files.private_dir(repo / f"{files.TMP_PREFIX}{name}")
        delta_path = tmp / "delta.bin"
        with snapshot.read_snapshot(env) as txn, open(delta_path, "wb") as f:
            state = snapshot.read_state(env, txn)
            if state.lineage != previous.manifest.lineage:
                raise BackupError(
                    f"the store was restored from a backup after {previous.path.name}: "
                    "an incremental cannot span that; make a full backup"
                )
            dbs = snapshot.handles(env, txn)
            writer = DeltaWriter(f)
            stats = _write_changes(
                txn, dbs=dbs, writer=writer, previous=previous.manifest, current=state.mailboxes, tick=tick
            )
            writer.end()
        entry = _file_entry(tmp, delta_path, None)
        stats["bytes"] = entry.size
        manifest = Manifest(
            kind=INCREMENTAL,
            name=name,
            created=state.created,
            epoch=state.epoch,
            next_body_id=state.next_body_id,
            mailboxes=state.mailboxes,
            files=(entry,),
            databases=state.databases,
            lineage=state.lineage,
            parent=previous.path.name,
            parent_manifest_sha256=previous.manifest_sha256,
            stats=stats,
        )
        _finish(tmp, repo / name, manifest)
        return Created(repo / name, manifest, time.monotonic() - started)
    finally:
        env.close()


def _write_changes(
    txn: lmdb.Transaction,
    *,
    dbs: dict[str, lmdb._Database],
    writer: DeltaWriter,
    previous: Manifest,
    current: tuple[MailboxState, ...],
    tick: Tick | None,
) -> dict[str, float]:
    stats = {"mailboxes_changed": 0.0, "messages_written": 0.0, "bodies_written": 0.0, "mailboxes_dropped": 0.0}
    # Small databases (users, quotas, addresses, mailbox names and records, meta, and any
    # database added later) are copied whole: renames, creates and deletes come with them.
    for db_name in sorted(set(dbs) - DELTA_DBS):
        flags = dbs[db_name].flags()
        writer.clear(db_name, tuple(sorted(k for k, on in flags.items() if on)))
        for key, value in txn.cursor(db=dbs[db_name]):
            writer.put(db_name, bytes(key), bytes(value))
    before = {m.mailbox_id: m for m in previous.mailboxes}
    bodies_written: set[int] = set()
    for box in current:
        old = before.get(box.mailbox_id)
        # A HIGHESTMODSEQ below the previous one means the store was restored from an older
        # backup meanwhile: the modseqs say nothing then, so the mailbox is written whole.
        same_box = old is not None and old.uidvalidity == box.uidvalidity and old.highestmodseq <= box.highestmodseq
        if same_box and old is not None and old.highestmodseq == box.highestmodseq:
            continue
        since = old.highestmodseq if same_box and old is not None else 0
        if (since == 0 and old is not None) or box.noselect:
            # Re-created, or deleted and kept as a \\Noselect parent: nothing of the old one
            # stays (its messages and tombstones were purged).
            writer.drop(box.mailbox_id)
        stats["mailboxes_changed"] += 1
        written_before = writer.bytes
        uids: list[int] = []
        changed: list[tuple[bytes, bytes, int]] = []
        prefix = U64.pack(box.mailbox_id)
        cur = txn.cursor(db=dbs["messages"])
        if cur.set_range(prefix):
            for key, value in cur:
                if bytes(key[:8]) != prefix:
                    break
                uids.append(MSG_KEY.unpack(bytes(key))[1])
                rec = MessageRecord.unpack(value)
                if rec.modseq > since:
                    changed.append((bytes(key), bytes(value), rec.body_id))
        writer.keep(box.mailbox_id, uid_ranges(uids))
        for key, value, body_id in changed:
            # A body older than the previous snapshot's counter was alive then (ids are never
            # reused and a body freed once is gone), so the previous chain has it already.
            if body_id >= previous.next_body_id and body_id not in bodies_written:
                _write_body(txn, dbs, writer, body_id)
                bodies_written.add(body_id)
            writer.put("messages", key, value)
        stats["messages_written"] += len(changed)
        vcur = txn.cursor(db=dbs["vanished"])
        if vcur.set_range(VANISHED_KEY.pack(box.mailbox_id, since + 1, 0)):
            for key, value in vcur:
                if bytes(key[:8]) != prefix:
                    break
                writer.put("vanished", bytes(key), bytes(value))  # a run's last UID (store/tombstones.py)
        if tick is not None:
            tick(writer.bytes - written_before)
    gone = set(before) - {m.mailbox_id for m in current}
    for mid in sorted(gone):
        writer.drop(mid)
    stats["mailboxes_dropped"] = float(len(gone))
    stats["bodies_written"] = float(len(bodies_written))
    return stats


def _write_body(txn: lmdb.Transaction, dbs: dict[str, lmdb._Database], writer: DeltaWriter, body_id: int) -> None:
    key = U64.pack(body_id)
    meta = txn.get(key, db=dbs["body_meta"])
    if meta is None:
        raise BackupError(f"body {body_id} is referenced but missing in the store (run verify on the store's copy)")
    writer.put("body_meta", key, bytes(meta))
    cur = txn.cursor(db=dbs["body_chunks"])
    if cur.set_range(key):
        for ckey, chunk in cur:
            if bytes(ckey[:8]) != key:
                break
            writer.put("body_chunks", bytes(ckey), bytes(chunk))


def lmdb_dir_of_store(store_dir: pathlib.Path) -> pathlib.Path:
    """The LMDB directory of a store data dir (`mailha store serve --data DIR` puts it in DIR/lmdb)."""
    return store_dir / "lmdb"
