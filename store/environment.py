"""Opening a store environment for writing: the LMDB flags durability rests on,
every named database, created if missing, and the indexes an environment
written by an older version lacks, built in the transaction that creates them
(a crash cannot leave them empty). Also reopening it in a running store
(store/committer.py, "Reopening"): the same files and flags, handles rebound.

Apart from schema.py because the index builders (store/mailbox_index.py)
themselves read the schema.
"""

from __future__ import annotations

import pathlib

import lmdb

from store.mailbox_index import build, build_members
from store.schema import DB_NAMES, MAX_DBS, Dbs, build_deleted_index


def open_environment(path: pathlib.Path, *, map_size: int, max_readers: int) -> lmdb.Environment:
    """The store's environment at `path`: every commit fsyncs its data pages (sync=True); the
    meta page is flushed by the committer, only after batches that must be durable
    (store/committer.py, "Durability classes"). Never NOSYNC; never WRITEMAP (with a
    writable map a full disk is a SIGBUS on a sparse file, not an error)."""
    return lmdb.open(
        str(path),
        map_size=map_size,
        max_dbs=MAX_DBS,
        max_readers=max_readers,
        subdir=True,
        sync=True,
        metasync=False,
        writemap=False,
    )


def open_dbs(env: lmdb.Environment) -> Dbs:
    with env.begin(write=True) as txn:
        # Named databases are keys of the main database: an environment written before the
        # \\Deleted index existed has no `deleted` key yet, and gets the index built below.
        index_absent = txn.get(b"deleted") is None
        # Likewise the flag and header indexes (store/mailbox_index.py).
        search_indexes_absent = txn.get(b"flag_index") is None
        # And the UID lists per flag set, built from the flag index (store/flag_members.py).
        members_absent = txn.get(b"flag_members") is None
        handles = {name: env.open_db(name.encode(), txn=txn, create=True) for name in DB_NAMES}
        if index_absent:
            build_deleted_index(txn, handles["messages"], handles["deleted"])
        dbs = Dbs(handles)
        if search_indexes_absent:
            txn.drop(dbs.flag_members, delete=False)  # derived from the flag index: built with it
            build(txn, dbs)  # the flag index's writer fills flag_members too
        elif members_absent:
            build_members(txn, dbs)
    return dbs


def rebind_dbs(env: lmdb.Environment, dbs: Dbs) -> None:
    """Point `dbs` (the object every part of the store holds) at the databases of a reopened
    `env`: the handles of the closed environment are dead. Every database exists (open_dbs
    created them when the store started), so nothing is written."""
    with env.begin(write=True) as txn:
        dbs.rebind({name: env.open_db(name.encode(), txn=txn, create=False) for name in DB_NAMES})
