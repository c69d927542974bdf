"""The store's hot read answers as functions of one read transaction.

MailStore (`store.account_ops`, `store.message_ops`) runs them for its gRPC
callers; `store.reader.LocalReader` runs the same functions on a read-only
environment for an imapd beside the store. Each takes (txn, dbs, request) and
returns the API message, raising `store.errors` on bad input.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import NamedTuple

import lmdb

from mailha_api import store_pb2
from store import (
    bodies,
    fencing,
    flag_members,
    flag_sets,
    le_columns,
    mailboxes,
    message_facts,
    messages,
    names,
    recent,
    uidset,
    user_settings,
    users,
)
from store.schema import Dbs, MessageRecord
from store.uid_list_cache import UidListCache

# FetchBatch answers in one gRPC message: bounded well under the 8 MiB message limit.
FETCH_BATCH_MAX_MESSAGES = 2000
FETCH_BATCH_MAX_BYTES = 4 * 1024 * 1024


class LoginRecord(NamedTuple):
    user: str  # the user the login name means
    password_hash: str  # as stored (store.passwords)
    disabled: bool


def login_record(txn: lmdb.Transaction, dbs: Dbs, login: str) -> LoginRecord | None:
    """The account a login name (a user name or an address of one) means, None if none."""
    user = users.login_name(txn, dbs, login)
    stored = users.password_hash(txn, dbs, user) if user else None
    if user is None or stored is None:
        return None
    return LoginRecord(user, stored, user_settings.disabled(txn, dbs, user))


def list_mailboxes(
    txn: lmdb.Transaction, dbs: Dbs, req: store_pb2.ListMailboxesRequest
) -> store_pb2.ListMailboxesReply:
    users.require_user(txn, dbs, req.user)
    boxes = mailboxes.list_all(txn, dbs, req.user, req.with_status, req.subscribed_only)
    return store_pb2.ListMailboxesReply(mailboxes=boxes)


def status(txn: lmdb.Transaction, dbs: Dbs, user: str, name: str) -> store_pb2.MailboxInfo:
    users.require_user(txn, dbs, user)
    mid, record = mailboxes.lookup(txn, dbs, user, name)
    kids = bool(mailboxes.children(txn, dbs, user, record.name))
    out = mailboxes.info(record, mid, kids, with_status=True)
    out.status.recent = recent.count(txn, dbs, mid)
    return out


def select(
    txn: lmdb.Transaction,
    dbs: Dbs,
    user: str,
    name: str,
    *,
    packed: bool = False,
    uid_lists: UidListCache | None = None,
) -> store_pb2.SelectReply:
    users.require_user(txn, dbs, user)
    mid, record = mailboxes.lookup(txn, dbs, user, name)
    mailboxes.selectable(txn, dbs, user, mid)
    kids = bool(mailboxes.children(txn, dbs, user, record.name))
    reply = store_pb2.SelectReply(mailbox=mailboxes.info(record, mid, kids, with_status=True))
    # From the UID lists (flag_members): every UID, the flag sets in use and the first
    # message of each (a few reads, whatever the size).
    raw_uids = uid_lists.get(mid, record.uidvalidity, record.highestmodseq) if uid_lists is not None else None
    if raw_uids is None:
        raw_uids = flag_members.uids_in(txn, dbs.flag_members, mid, flag_members.EVERY, [(1, uidset.MAX_UID)])
        if uid_lists is not None:
            uid_lists.put(mid, record.uidvalidity, record.highestmodseq, raw_uids)
    uids = le_columns.to_array("I", raw_uids)
    if packed:
        reply.uids_le32 = raw_uids
    else:
        reply.uids.extend(uids)
    fids = flag_members.flag_ids(txn, dbs.flag_members, mid)
    flag_lists = {fid: flag_sets.flags_of(txn, dbs, fid) for fid in fids}
    unseen = [fid for fid, flags in flag_lists.items() if "\\Seen" not in flags]
    reply.first_unseen_uid = min((flag_members.first_uid(txn, dbs.flag_members, mid, fid) for fid in unseen), default=0)
    reply.recent_boundary = recent.boundary(txn, dbs, mid)
    reply.mailbox.status.recent = len(uids) - bisect.bisect_left(uids, reply.recent_boundary)
    keywords = {f for flags in flag_lists.values() for f in flags if f[0] != "\\"}
    reply.permanent_flags.extend(sorted(keywords))
    return reply


def check_fetch(req: store_pb2.FetchRequest) -> str:
    """Validate a fetch request before any transaction; the user's name."""
    uidset.parse(req.uid_set)
    return names.user_name(req.user)


FetchItems = list[tuple[store_pb2.MessageMeta, bytes | None]]


def fetch_batch(txn: lmdb.Transaction, dbs: Dbs, user: str, req: store_pb2.FetchRequest) -> store_pb2.FetchBatchReply:
    """Fetch's selection in one reply, or `truncated` (and nothing) past the bounds."""
    items = fetch_items(txn, dbs, user, req)
    if items is None:
        return store_pb2.FetchBatchReply(truncated=True)
    reply = store_pb2.FetchBatchReply(metas=[meta for meta, _ in items])
    if req.with_body:
        reply.bodies.extend(body or b"" for _, body in items)
    return reply


def fetch_items(txn: lmdb.Transaction, dbs: Dbs, user: str, req: store_pb2.FetchRequest) -> FetchItems | None:
    """`fetch_batch` as (meta, body) pairs, None past its bounds: a reader in the caller's
    process takes the bodies as they are (no copy into a reply message and out again)."""
    records = fetch_records(
        txn,
        dbs,
        user,
        req.mailbox_id,
        req.uid_set,
        with_header=req.with_header,
        with_body=req.with_body,
        changed_since=req.changed_since,
        body_offset=req.body_offset,
        body_length=req.body_length,
    )
    if records is None:
        return None
    out: FetchItems = []
    for uid, rec, header, body in records:
        item = messages.meta(uid, rec)
        if req.with_message_facts:
            message_facts.fill_meta(txn, dbs, req.mailbox_id, rec, item)
        if header is not None:
            item.header = header
        out.append((item, None if body is None else body[0] if len(body) == 1 else b"".join(body)))
    return out


# One message of a FETCH as the store keeps it: (uid, record, header, body pieces), the
# bytes when asked for. A plain tuple: one is made per message of every local FETCH.
# The body stays in the pieces it was read in (at most CHUNK_SIZE each, one for a small
# message): joining a 1 MiB body cost a copy and, past glibc's mmap threshold, a fresh
# mapping whose every page faulted in (issue 13); the FETCH literal goes out piece by piece.
FetchRecord = tuple[int, MessageRecord, bytes | None, tuple[bytes, ...] | None]


def fetch_records(
    txn: lmdb.Transaction,
    dbs: Dbs,
    user: str,
    mailbox_id: int,
    uid_set: str,
    *,
    with_header: bool,
    with_body: bool,
    changed_since: int = 0,
    body_offset: int = 0,
    body_length: int = 0,
) -> list[FetchRecord] | None:
    """The messages of `uid_set` changed after `changed_since`, None past FetchBatch's bounds.

    Without API messages: an imapd beside the store builds its own values from the
    records (a MessageMeta per message and its conversion showed in FETCH profiles)."""
    mailboxes.selectable(txn, dbs, user, mailbox_id)
    out: list[FetchRecord] = []
    total = 0
    for uid, rec in messages.in_set(txn, dbs, mailbox_id, uid_set):
        if rec.modseq <= changed_since:
            continue
        if len(out) >= FETCH_BATCH_MAX_MESSAGES:
            return None
        header: bytes | None = None
        body: tuple[bytes, ...] | None = None
        if with_header:
            header = bodies.read_header(txn, dbs, rec.body_id)
            total += len(header)
        if with_body:
            start = min(body_offset, rec.size)
            end = rec.size if not body_length else min(rec.size, start + body_length)
            total += end - start
            if total > FETCH_BATCH_MAX_BYTES:
                return None
            body = tuple([piece for _, piece in bodies.read_range(txn, dbs, rec.body_id, start, end - start)]) or (b"",)
        if total > FETCH_BATCH_MAX_BYTES:
            return None
        out.append((uid, rec, header, body))
    return out


def unchanged_by_store(txn: lmdb.Transaction, dbs: Dbs, req: store_pb2.StoreFlagsRequest) -> int | None:
    """When the STORE `req` would change no message (so StoreFlags would write nothing and
    answer no update): the mailbox's HIGHESTMODSEQ; else None. UNCHANGEDSINCE: always None.

    A STORE that changes nothing is a read: an imapd beside the store answers it from this
    instead of a write call (clients re-set \\Seen on mail they open all the time)."""
    if req.has_unchanged_since or req.unchanged_since:
        return None
    return flags_already(
        txn,
        dbs,
        epoch=req.epoch,
        user=req.user,
        mailbox_id=req.mailbox_id,
        uid_set=req.uid_set,
        mode=req.mode,
        flags=req.flags,
    )


def flags_already(
    txn: lmdb.Transaction,
    dbs: Dbs,
    *,
    epoch: int,
    user: str,
    mailbox_id: int,
    uid_set: str,
    mode: int,
    flags: Iterable[str],
) -> int | None:
    """`unchanged_by_store` of a STORE without UNCHANGEDSINCE, from its fields: imapd asks this
    before it builds a request (the request is only needed when the store must write)."""
    user = names.user_name(user)
    highestmodseq = mailboxes.selectable_modseq(txn, dbs, user, mailbox_id)
    if not messages.flags_unchanged(txn, dbs, mailbox_id, uid_set, mode=mode, flags=names.flags(flags)):
        return None
    if epoch != fencing.stored_epoch(txn, dbs):
        return None  # a deposed (or not yet established) writer: the store answers FENCED
    return highestmodseq


def nothing_to_expunge(txn: lmdb.Transaction, dbs: Dbs, req: store_pb2.ExpungeRequest) -> int | None:
    """When the EXPUNGE `req` would remove nothing (no \\Deleted message in its set), so
    Expunge would write nothing and report nothing: the mailbox's HIGHESTMODSEQ; else None.

    Clients send EXPUNGE (and CLOSE) with nothing deleted all the time: an imapd beside
    the store answers those from this instead of a write call."""
    user = names.user_name(req.user)
    if req.uid_set:
        uidset.parse(req.uid_set)
    record = mailboxes.selectable(txn, dbs, user, req.mailbox_id)
    if messages.any_deleted_in(txn, dbs, req.mailbox_id, req.uid_set):
        return None
    if req.epoch != fencing.stored_epoch(txn, dbs):
        return None  # a deposed (or not yet established) writer: the store answers FENCED
    return record.highestmodseq
