"""What a message's bytes say that SORT, THREAD and FETCH PREVIEW need, computed once.

Per body, in the named database `message_facts` (owned by this module):
body_id u64 -> length u32 (little-endian) of the SortKeys stored form of
`mailparse.sort_keys.stored_keys` (base subject, first From/To/Cc mailbox
and display name, sent date, Message-ID, References), that form, then the
preview (`mailparse.preview`, UTF-8, at most 200 characters). The value is computed when the message arrives, in
the RPC thread (not the committer), and written in the append's own write
transaction; COPY shares the body and so its facts; the last EXPUNGE of the
body deletes them (`bodies.decref`). Bodies stored before this table existed
have no entry: readers then fall back to parsing the header block.

Why per body and not per (mailbox, uid) like the header index: a body never
changes, so COPY/MOVE/RENAME need no write here at all.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final

import lmdb

from mailha_api import store_pb2
from mailparse.preview import preview_text
from mailparse.sort_keys import stored_keys
from store import save_dates
from store.ordered_put import put_in_order
from store.schema import MSG_KEY, U64, Dbs, MessageRecord, message_body_id

MAX_SORT_KEYS: Final = 64 * 1024  # a header block is at most 1 MiB; its keys are far smaller, but bound them
_LENGTH: Final = struct.Struct("<I")


def compute(header: bytes, message_head: bytes) -> bytes:
    """The stored facts of a new message from its header block (`bodies.header_block`) and first bytes."""
    return of_keys(stored_keys(header), message_head)


def of_keys(keys: bytes, message_head: bytes) -> bytes:
    """The stored facts of a new message from the `stored_keys` of its header block (which
    `mailparse.head_facts.index_and_keys` gives with the indexed header text) and its first bytes."""
    if len(keys) > MAX_SORT_KEYS:
        keys = b""
    preview = preview_text(message_head).encode("utf-8", "surrogatepass")
    return _LENGTH.pack(len(keys)) + keys + preview


def sort_keys_of(facts: bytes) -> bytes:
    """The SortKeys stored form inside `facts` (b"" when none)."""
    if len(facts) < _LENGTH.size:
        return b""
    (length,) = _LENGTH.unpack_from(facts)
    return facts[_LENGTH.size : _LENGTH.size + length]


def preview_of(facts: bytes) -> str | None:
    """The preview inside `facts`; None when the facts are missing (a body stored before they were kept)."""
    if len(facts) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack_from(facts)
    return facts[_LENGTH.size + length :].decode("utf-8", "surrogatepass")


def of_body(txn: lmdb.Transaction, dbs: Dbs, body_id: int) -> bytes:
    facts = txn.get(U64.pack(body_id), db=dbs.message_facts)
    return bytes(facts) if facts is not None else b""


def put(txn: lmdb.Transaction, dbs: Dbs, body_id: int, facts: bytes) -> None:
    if facts:
        put_in_order(txn, U64.pack(body_id), facts, dbs.message_facts)  # new bodies: increasing ids


def forget(txn: lmdb.Transaction, dbs: Dbs, body_id: int) -> None:
    """The body is gone (its last reference expunged)."""
    txn.delete(U64.pack(body_id), db=dbs.message_facts)


def sort_keys_of_uids(txn: lmdb.Transaction, dbs: Dbs, mid: int, uids: Iterable[int]) -> list[bytes]:
    """The stored sort keys of each message of `uids` in mailbox `mid` (b"" where none are stored)."""
    out: list[bytes] = []
    get = txn.get
    for uid in uids:
        rec = get(MSG_KEY.pack(mid, uid), db=dbs.messages)
        facts = get(U64.pack(message_body_id(rec)), db=dbs.message_facts) if rec is not None else None
        out.append(sort_keys_of(bytes(facts)) if facts is not None else b"")
    return out


def fill_meta(txn: lmdb.Transaction, dbs: Dbs, mid: int, rec: MessageRecord, item: store_pb2.MessageMeta) -> None:
    """FetchRequest.with_message_facts: the save date, the body id and the preview of one message."""
    saved = save_dates.get(txn, dbs, mid, item.uid)
    item.save_date = rec.internal_date if saved is None else saved
    item.body_id = rec.body_id
    preview = preview_of(of_body(txn, dbs, rec.body_id))
    if preview is not None:
        item.preview = preview
        item.has_preview = True
