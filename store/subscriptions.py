"""Subscriptions that outlive their mailbox (RFC 3501 6.3.6, RFC 5258 \\NonExistent).

A mailbox's own subscription is a bit of its record; when a subscribed mailbox is
deleted (or a client subscribes a name that does not exist), the name is kept
here: `meta` key `b"subscribed\\0" + user \\0 name` -> empty. LIST (SUBSCRIBED) and
LSUB still show it; CREATE of the name takes it back into the new record.
"""

from __future__ import annotations

import lmdb

from store.schema import Dbs, user_key

_PREFIX = b"subscribed\0"


def keep(txn: lmdb.Transaction, dbs: Dbs, user: str, name: str) -> None:
    txn.put(_PREFIX + user_key(user, name), b"", db=dbs.meta)


def take(txn: lmdb.Transaction, dbs: Dbs, user: str, name: str) -> bool:
    """Remove the kept subscription of `name`; True if there was one."""
    return bool(txn.delete(_PREFIX + user_key(user, name), db=dbs.meta))


def names(txn: lmdb.Transaction, dbs: Dbs, user: str) -> list[str]:
    prefix = _PREFIX + user_key(user)
    cur = txn.cursor(db=dbs.meta)
    out: list[str] = []
    if cur.set_range(prefix):
        for key in cur.iternext(keys=True, values=False):
            key = bytes(key)
            if not key.startswith(prefix):
                break
            out.append(key[len(prefix) :].decode("utf-8"))
    return out
