"""Reading a store's LMDB environment for a backup: read-only, in one read transaction.

A read transaction is LMDB's snapshot: writers go on committing (into other
pages) while it is open, so the backup neither pauses nor sees half a write.
Nothing here lists the named databases by hand: they are the keys of the
main database, so one added later is backed up too.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import lmdb

from backup.errors import BackupError
from backup.manifest import MailboxState
from store.schema import U64, MailboxRecord

MAX_DBS = 128
# Meta key written by every restore (random): a store restored from a backup has gone back in
# time, its counters (body ids, modseqs) repeat values the chain already holds.
LINEAGE_KEY = b"backup_lineage"


def open_live(lmdb_dir: pathlib.Path) -> lmdb.Environment:
    """The store's environment, read-only, beside a running store (LMDB's lock file coordinates)."""
    if not (lmdb_dir / "data.mdb").is_file():
        raise BackupError(f"{lmdb_dir}: no LMDB environment (data.mdb) here")
    # Opening reads the main database in a first read transaction: if the running store grows
    # its map between our open and that transaction, LMDB says MDB_MAP_RESIZED; open again
    # (the new open takes the new size).
    for _ in range(4):
        try:
            return lmdb.open(str(lmdb_dir), readonly=True, max_dbs=MAX_DBS, subdir=True, lock=True)
        except lmdb.MapResizedError:
            continue
    return lmdb.open(str(lmdb_dir), readonly=True, max_dbs=MAX_DBS, subdir=True, lock=True)


def open_copy(lmdb_dir: pathlib.Path) -> lmdb.Environment:
    """A backup's copy, read-only, without a lock file (nothing else writes it)."""
    if not (lmdb_dir / "data.mdb").is_file():
        raise BackupError(f"{lmdb_dir}: no LMDB environment (data.mdb) here")
    return lmdb.open(str(lmdb_dir), readonly=True, lock=False, max_dbs=MAX_DBS, subdir=True)


@contextmanager
def read_snapshot(env: lmdb.Environment) -> Iterator[lmdb.Transaction]:
    """One read transaction; if a running store grew the map meanwhile, adopt its size."""
    for _ in range(3):
        try:
            txn = env.begin(buffers=True)
        except lmdb.MapResizedError:
            env.set_mapsize(0)
            continue
        try:
            yield txn
        except BaseException:
            txn.abort()
            raise
        # Committing a read transaction keeps the database handles opened in it valid
        # (an abort would close them, and lmdb's handle cache would hand out stale ones).
        txn.commit()
        return
    raise BackupError("the store's map kept growing while the backup tried to start")


def database_names(txn: lmdb.Transaction) -> list[str]:
    return sorted(bytes(key).decode() for key in txn.cursor().iternext(keys=True, values=False))


def handles(env: lmdb.Environment, txn: lmdb.Transaction) -> dict[str, lmdb._Database]:
    return {name: env.open_db(name.encode(), txn=txn, create=False) for name in database_names(txn)}


@dataclass(frozen=True)
class SnapshotState:
    created: float
    epoch: int
    next_body_id: int
    mailboxes: tuple[MailboxState, ...]
    databases: dict[str, int]
    lineage: str


def meta_u64(txn: lmdb.Transaction, meta: lmdb._Database, key: bytes, default: int) -> int:
    raw = txn.get(key, db=meta)
    return default if raw is None else int(U64.unpack(bytes(raw))[0])


def read_state(env: lmdb.Environment, txn: lmdb.Transaction) -> SnapshotState:
    dbs = handles(env, txn)
    if "mailboxes" not in dbs or "meta" not in dbs:
        raise BackupError("this LMDB environment is not a mailha store (no 'mailboxes'/'meta' database)")
    mailboxes = tuple(
        mailbox_state(int(U64.unpack(bytes(key))[0]), MailboxRecord.unpack(value))
        for key, value in txn.cursor(db=dbs["mailboxes"])
    )
    return SnapshotState(
        created=time.time(),
        epoch=meta_u64(txn, dbs["meta"], b"epoch", 0),
        next_body_id=meta_u64(txn, dbs["meta"], b"next_body_id", 1),
        mailboxes=mailboxes,
        databases={name: int(txn.stat(db)["entries"]) for name, db in dbs.items()},
        lineage=bytes(txn.get(LINEAGE_KEY, b"", db=dbs["meta"])).decode("ascii", "replace"),
    )


def mailbox_state(mid: int, rec: MailboxRecord) -> MailboxState:
    return MailboxState(
        mailbox_id=mid,
        user=rec.user,
        name=rec.name,
        uidvalidity=rec.uidvalidity,
        uidnext=rec.uidnext,
        highestmodseq=rec.highestmodseq,
        messages=rec.messages,
        size=rec.size,
        noselect=rec.noselect,
    )
