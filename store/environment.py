"""Opening a store environment for writing: every named database, created if
missing, and the indexes an environment written by an older version lacks,
built in the transaction that creates them (a crash cannot leave them empty).

Apart from schema.py because the index builders (store/mailbox_index.py)
themselves read the schema.
"""

from __future__ import annotations

import lmdb

from store.mailbox_index import build, build_members
from store.schema import DB_NAMES, Dbs, build_deleted_index


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
