"""Restoring a chain (a full backup and the incrementals after it) into a new store directory.

The full backup's copy becomes the environment; each incremental is applied
in one write transaction; then (once for the chain) body reference counts are
recounted from the messages (bodies no message refers to any more are
removed) and the \\Deleted index is rebuilt. The result is built beside the target and
renamed into place, so a store never starts on half a restore.
"""

from __future__ import annotations

import os
import pathlib
import secrets
from collections import Counter
from collections.abc import Callable

import lmdb

from backup import files
from backup.delta_format import Clear, Drop, Keep, Put, read_delta
from backup.errors import BackupError
from backup.repository import Member
from backup.snapshot import LINEAGE_KEY, MAX_DBS
from store.bodies import FLAG_BITS, reference_count
from store.schema import BODY_META, MSG_KEY, U64, MessageRecord, build_deleted_index

Tick = Callable[[int], None]
COPY_PIECE = 4 * 1024 * 1024
DERIVED_FROM_MESSAGES = ("messages", "body_meta", "body_chunks", "deleted")
# Flags of a named database (lmdb's _Database.flags()), given again when a restore creates it.
LMDB_FLAGS = frozenset({"reverse_key", "dupsort", "integerkey", "integerdup", "dupfixed"})


def restore_chain(members: list[Member], lmdb_dir: pathlib.Path, *, tick: Tick | None = None) -> None:
    """Build the environment of the chain's last member at `lmdb_dir` (which must not exist yet)."""
    if lmdb_dir.exists() and any(lmdb_dir.iterdir()):
        raise BackupError(f"{lmdb_dir}: not empty; restore goes into a new data directory only")
    files.private_dir(lmdb_dir.parent)
    tmp = lmdb_dir.with_name(f"{files.TMP_PREFIX}{lmdb_dir.name}")
    files.remove_tree(tmp)
    files.private_dir(tmp)
    try:
        _copy_file(members[0].path / "lmdb" / "data.mdb", tmp / "data.mdb", tick)
        env = lmdb.open(str(tmp), max_dbs=MAX_DBS, subdir=True, map_size=_map_size(tmp))
        try:
            for member in members[1:]:
                apply_incremental(env, member, tick)
            with env.begin(write=True) as txn:
                if len(members) > 1:
                    # Once for the whole chain: both scan every message.
                    dbs = {name: env.open_db(name.encode(), txn=txn, create=True) for name in DERIVED_FROM_MESSAGES}
                    recount_bodies(txn, dbs["messages"], dbs["body_meta"], dbs["body_chunks"])
                    # The counts are whole in body_meta now: the snapshot's extra references go.
                    txn.drop(env.open_db(b"body_refs", txn=txn, create=True), delete=False)
                    txn.drop(dbs["deleted"], delete=False)
                    build_deleted_index(txn, dbs["messages"], dbs["deleted"])
                meta = env.open_db(b"meta", txn=txn, create=False)
                txn.put(LINEAGE_KEY, secrets.token_hex(16).encode(), db=meta)
        finally:
            env.close()
        os.chmod(tmp / "data.mdb", files.FILE_MODE)
        for leftover in tmp.glob("lock.mdb"):
            leftover.unlink()
        if lmdb_dir.exists():
            lmdb_dir.rmdir()  # checked empty above
        files.seal_directory(tmp, lmdb_dir)
    except BaseException:
        files.remove_tree(tmp)
        raise


def _map_size(env_dir: pathlib.Path) -> int:
    # Room for the incrementals on top of the copy; the store grows the map itself later.
    return max(256 << 20, 2 * (env_dir / "data.mdb").stat().st_size + (64 << 20))


def _copy_file(src: pathlib.Path, dst: pathlib.Path, tick: Tick | None) -> None:
    writer = files.PacedWriter(dst, tick)
    try:
        with open(src, "rb") as fin:
            while piece := fin.read(COPY_PIECE):
                writer.write(piece)
    finally:
        writer.close()


def apply_incremental(env: lmdb.Environment, member: Member, tick: Tick | None = None) -> None:
    path = member.path / "delta.bin"
    with env.begin(write=True) as txn, open(path, "rb") as f:
        dbs: dict[str, lmdb._Database] = {}

        def db(name: str, flags: tuple[str, ...] = ()) -> lmdb._Database:
            if name not in dbs:
                options = {flag: True for flag in flags if flag in LMDB_FLAGS}
                dbs[name] = env.open_db(name.encode(), txn=txn, create=True, **options)
            return dbs[name]

        for op in read_delta(f, str(path)):
            if isinstance(op, Put):
                txn.put(op.key, op.value, db=db(op.db))
                if tick is not None:
                    tick(len(op.value))
            elif isinstance(op, Clear):
                txn.drop(db(op.db, op.flags), delete=False)
            elif isinstance(op, Keep):
                _keep(txn, db("messages"), op)
            elif isinstance(op, Drop):
                for name in ("messages", "vanished"):
                    _delete_prefix(txn, db(name), U64.pack(op.mailbox_id))


def _keep(txn: lmdb.Transaction, messages: lmdb._Database, keep: Keep) -> None:
    prefix = U64.pack(keep.mailbox_id)
    cur = txn.cursor(db=messages)
    if not cur.set_range(prefix):
        return
    while bytes(cur.key()[:8]) == prefix:
        uid = MSG_KEY.unpack(bytes(cur.key()))[1]
        if uid in keep:
            if not cur.next():
                return
        elif not cur.delete():
            return


def _delete_prefix(txn: lmdb.Transaction, db: lmdb._Database, prefix: bytes) -> None:
    cur = txn.cursor(db=db)
    if cur.set_range(prefix):
        while bytes(cur.key()).startswith(prefix):
            if not cur.delete():
                break


def recount_bodies(
    txn: lmdb.Transaction, messages: lmdb._Database, body_meta: lmdb._Database, body_chunks: lmdb._Database
) -> tuple[int, int]:
    """Set every body's reference count from the messages; drop unreferenced bodies. (fixed, dropped)"""
    values = txn.cursor(db=messages).iternext(keys=False, values=True)
    refs: Counter[int] = Counter(MessageRecord.unpack(value).body_id for value in values)
    fixed = dropped = 0
    cur = txn.cursor(db=body_meta)
    updates: list[tuple[bytes, bytes]] = []
    doomed: list[bytes] = []
    for key, value in cur:
        body_id = int(U64.unpack(bytes(key))[0])
        raw_count, size = BODY_META.unpack_from(bytes(value))
        flags = raw_count & FLAG_BITS  # how the chunks are stored (store.bodies); kept
        want = refs.get(body_id, 0)
        if want == 0:
            doomed.append(bytes(key))
        elif want != reference_count(raw_count):
            updates.append((bytes(key), BODY_META.pack(want | flags, size) + bytes(value[BODY_META.size :])))
    for key, value in updates:
        txn.put(key, value, db=body_meta)
        fixed += 1
    for key in doomed:
        txn.delete(key, db=body_meta)
        _delete_prefix(txn, body_chunks, key)
        dropped += 1
    return fixed, dropped
