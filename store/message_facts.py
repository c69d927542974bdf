"""What a message's bytes say that SORT, THREAD (and later fetch items) need, computed once.

Per body, in the named database `message_facts` (owned by this module):
body_id u64 -> the SortKeys stored form of `imapd.message.sort_keys.stored_keys`
(base subject, first From/To/Cc mailbox and display name, sent date,
Message-ID, References). The value is computed when the message arrives, in
the RPC thread (not the committer), and written in the append's own write
transaction; COPY shares the body and so its facts; the last EXPUNGE of the
body deletes them (`bodies.decref`). Bodies stored before this table existed
have no entry: readers then fall back to parsing the header block.

Why per body and not per (mailbox, uid) like the header index: a body never
changes, so COPY/MOVE/RENAME need no write here at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import lmdb

from imapd.message.sort_keys import stored_keys
from store.schema import MSG_KEY, U64, Dbs, message_body_id

MAX_FACTS: Final = 64 * 1024  # a header block is at most 1 MiB; its keys are far smaller, but bound them


def compute(header: bytes) -> bytes:
    """The stored facts of a new message from its header block (`bodies.header_block`)."""
    facts = stored_keys(header)
    return facts if len(facts) <= MAX_FACTS else b""


def put(txn: lmdb.Transaction, dbs: Dbs, body_id: int, facts: bytes) -> None:
    if facts:
        txn.put(U64.pack(body_id), facts, db=dbs.message_facts)


def forget(txn: lmdb.Transaction, dbs: Dbs, body_id: int) -> None:
    """The body is gone (its last reference expunged)."""
    txn.delete(U64.pack(body_id), db=dbs.message_facts)


def of_uids(txn: lmdb.Transaction, dbs: Dbs, mid: int, uids: Iterable[int]) -> list[bytes]:
    """The stored facts of each message of `uids` in mailbox `mid` (b"" where none are stored)."""
    out: list[bytes] = []
    get = txn.get
    for uid in uids:
        rec = get(MSG_KEY.pack(mid, uid), db=dbs.messages)
        facts = get(U64.pack(message_body_id(rec)), db=dbs.message_facts) if rec is not None else None
        out.append(bytes(facts) if facts is not None else b"")
    return out
