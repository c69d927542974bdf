"""Mailboxes: create, delete (\\Noselect when it has children), rename, list, status."""

from __future__ import annotations

import time

import lmdb

from mailha_api import store_pb2
from store import bodies, mailbox_index, metadata, names, recent, save_dates, subscriptions, tombstones
from store.counters import next_value
from store.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from store.schema import MSG_KEY, U64, Dbs, MailboxRecord, MessageRecord, user_key, user_prefix
from store.users import put_quota, quota


def _new_uidvalidity(txn: lmdb.Transaction, dbs: Dbs) -> int:
    # Seeded from the clock so a re-created environment does not repeat old values.
    return next_value(txn, dbs, b"next_uidvalidity", int(time.time()) & 0x7FFFFFFF) & 0xFFFFFFFF


def lookup(txn: lmdb.Transaction, dbs: Dbs, user: str, name: str) -> tuple[int, MailboxRecord]:
    mid = id_of(txn, dbs, user, names.mailbox_name(name))
    return mid, by_id(txn, dbs, user, mid)


def id_of(txn: lmdb.Transaction, dbs: Dbs, user: str, canonical: str) -> int:
    """The id of mailbox `canonical` (a names.mailbox_name result) of `user`, its record unread:
    an append reads that once per batch (batch_records), after this."""
    raw = txn.get(user_key(user, canonical), db=dbs.mailbox_names)
    if raw is None:
        raise NotFound(f"mailbox {canonical!r} of user {user!r} does not exist")
    return int(U64.unpack(raw)[0])


def by_id(txn: lmdb.Transaction, dbs: Dbs, user: str, mid: int) -> MailboxRecord:
    raw = txn.get(U64.pack(mid), db=dbs.mailboxes)
    record = None if raw is None else MailboxRecord.unpack(raw)
    if record is None or record.user != user:
        raise NotFound(f"mailbox id {mid} of user {user!r} does not exist (deleted or renamed away?)")
    return record


def selectable(txn: lmdb.Transaction, dbs: Dbs, user: str, mid: int) -> MailboxRecord:
    record = by_id(txn, dbs, user, mid)
    if record.noselect:
        raise FailedPrecondition(f"mailbox {record.name!r} is \\Noselect (deleted, kept for its children)")
    return record


def selectable_modseq(txn: lmdb.Transaction, dbs: Dbs, user: str, mid: int) -> int:
    """`selectable(...).highestmodseq`, the record's names decoded only to raise its errors."""
    raw = txn.get(U64.pack(mid), db=dbs.mailboxes)
    modseq = None if raw is None else MailboxRecord.selectable_modseq(raw, user)
    return selectable(txn, dbs, user, mid).highestmodseq if modseq is None else modseq


def put(txn: lmdb.Transaction, dbs: Dbs, mid: int, record: MailboxRecord) -> None:
    txn.put(U64.pack(mid), record.pack(), db=dbs.mailboxes)


def user_mailboxes(txn: lmdb.Transaction, dbs: Dbs, user: str) -> list[tuple[str, int]]:
    """(name, mailbox_id) of every mailbox of `user`, in name order."""
    prefix = user_prefix(user)
    cur = txn.cursor(db=dbs.mailbox_names)
    out: list[tuple[str, int]] = []
    if cur.set_range(prefix):
        for key, value in cur:
            key = bytes(key)
            if not key.startswith(prefix):
                break
            out.append((key[len(prefix) :].decode("utf-8"), int(U64.unpack(value)[0])))
    return out


def children(txn: lmdb.Transaction, dbs: Dbs, user: str, name: str) -> list[tuple[str, int]]:
    prefix = user_key(user, name + names.DELIMITER)
    cur = txn.cursor(db=dbs.mailbox_names)
    out: list[tuple[str, int]] = []
    if cur.set_range(prefix):
        for key, value in cur:
            key = bytes(key)
            if not key.startswith(prefix):
                break
            out.append((key[len(user_prefix(user)) :].decode("utf-8"), int(U64.unpack(value)[0])))
    return out


def create(
    txn: lmdb.Transaction, dbs: Dbs, user: str, name: str, *, special_use: str = "", subscribed: bool = False
) -> tuple[int, MailboxRecord]:
    canonical = names.mailbox_name(name)
    special = names.special_use(special_use)
    for parent in names.parents(canonical):
        if txn.get(user_key(user, parent), db=dbs.mailbox_names) is None:
            _insert(txn, dbs, user, parent, special="", subscribed=False)
    raw = txn.get(user_key(user, canonical), db=dbs.mailbox_names)
    if raw is not None:
        mid = int(U64.unpack(raw)[0])
        record = by_id(txn, dbs, user, mid)
        if not record.noselect:
            raise AlreadyExists(f"mailbox {canonical!r} already exists")
        # Re-creating a \Noselect placeholder makes it selectable again, with a new UIDVALIDITY.
        record = record.evolve(noselect=False, uidvalidity=_new_uidvalidity(txn, dbs), special_use=special)
        put(txn, dbs, mid, record)
        return mid, record
    subscribed = subscriptions.take(txn, dbs, user, canonical) or subscribed
    return _insert(txn, dbs, user, canonical, special=special, subscribed=subscribed)


def _insert(
    txn: lmdb.Transaction, dbs: Dbs, user: str, name: str, *, special: str, subscribed: bool
) -> tuple[int, MailboxRecord]:
    mid = next_value(txn, dbs, b"next_mailbox_id", 1)
    record = MailboxRecord(
        user=user,
        name=name,
        uidvalidity=_new_uidvalidity(txn, dbs),
        uidnext=1,
        highestmodseq=1,
        special_use=special,
        subscribed=subscribed,
    )
    txn.put(user_key(user, name), U64.pack(mid), db=dbs.mailbox_names)
    put(txn, dbs, mid, record)
    return mid, record


def purge_messages(txn: lmdb.Transaction, dbs: Dbs, user: str, mid: int) -> list[int]:
    """Remove every message and tombstone of mailbox `mid`; fix the user's quota; return the UIDs."""
    prefix = U64.pack(mid)
    cur = txn.cursor(db=dbs.messages)
    uids: list[int] = []
    freed = 0
    if cur.set_range(prefix):
        while True:
            key = bytes(cur.key())
            if not key.startswith(prefix):
                break
            _, uid = MSG_KEY.unpack(key)
            rec = MessageRecord.unpack(cur.value())
            bodies.decref(txn, dbs, rec.body_id)
            uids.append(uid)
            freed += rec.size
            if not cur.delete():
                break
    for db in (dbs.vanished, dbs.deleted, dbs.flag_index, dbs.flag_members, dbs.header_index, dbs.save_dates):
        _delete_prefix(txn, db, prefix)
    if uids:
        q = quota(txn, dbs, user)
        put_quota(txn, dbs, user, q.__class__(q.limit, max(0, q.usage - freed), max(0, q.messages - len(uids))))
    return uids


def _delete_prefix(txn: lmdb.Transaction, db: lmdb._Database, prefix: bytes) -> None:
    cur = txn.cursor(db=db)
    if cur.set_range(prefix):
        while bytes(cur.key()).startswith(prefix):
            if not cur.delete():
                break


def delete(txn: lmdb.Transaction, dbs: Dbs, user: str, name: str) -> int:
    """Delete a mailbox; return its id. With children it stays as a \\Noselect placeholder."""
    mid, record = lookup(txn, dbs, user, name)
    if record.name == "INBOX":
        raise FailedPrecondition("INBOX cannot be deleted (rename it to move its messages away)")
    kids = children(txn, dbs, user, record.name)
    if kids and record.noselect:
        raise FailedPrecondition(f"mailbox {record.name!r} is already \\Noselect and has children; delete them first")
    purge_messages(txn, dbs, user, mid)
    metadata.forget(txn, dbs, user, mid)
    if kids:
        put(
            txn,
            dbs,
            mid,
            record.evolve(
                noselect=True, messages=0, unseen=0, deleted=0, size=0, highestmodseq=record.highestmodseq + 1
            ),
        )
    else:
        txn.delete(user_key(user, record.name), db=dbs.mailbox_names)
        txn.delete(U64.pack(mid), db=dbs.mailboxes)
        recent.forget(txn, dbs, mid)
        if record.subscribed:
            subscriptions.keep(txn, dbs, user, record.name)
    return mid


def rename(txn: lmdb.Transaction, dbs: Dbs, user: str, old: str, new: str) -> tuple[int, list[int], list[int]]:
    """Rename `old` (and its children) to `new`; return (new mailbox id, ids whose name changed,
    UIDs that left INBOX: renaming INBOX moves its messages out, an expunge for INBOX's sessions)."""
    mid, record = lookup(txn, dbs, user, old)
    target = names.mailbox_name(new)
    if txn.get(user_key(user, target), db=dbs.mailbox_names) is not None:
        raise AlreadyExists(f"mailbox {target!r} already exists")
    if target.startswith(record.name + names.DELIMITER):
        raise InvalidArgument(f"cannot rename {record.name!r} into its own child {target!r}")
    if record.name == "INBOX":
        new_id, left = _rename_inbox(txn, dbs, user, mid, target)
        return new_id, [], left
    moved = [(record.name, mid), *children(txn, dbs, user, record.name)]
    for parent in names.parents(target):
        if txn.get(user_key(user, parent), db=dbs.mailbox_names) is None:
            _insert(txn, dbs, user, parent, special="", subscribed=False)
    for old_name, child_id in moved:
        new_name = target + old_name[len(record.name) :]
        if txn.get(user_key(user, new_name), db=dbs.mailbox_names) is not None:
            raise AlreadyExists(f"mailbox {new_name!r} already exists")
        txn.delete(user_key(user, old_name), db=dbs.mailbox_names)
        txn.put(user_key(user, new_name), U64.pack(child_id), db=dbs.mailbox_names)
        child = by_id(txn, dbs, user, child_id)
        # Subscriptions belong to names (as in Dovecot): the old name stays subscribed, the new one
        # is subscribed only if it was before.
        if child.subscribed:
            subscriptions.keep(txn, dbs, user, old_name)
        subscribed = subscriptions.take(txn, dbs, user, new_name)
        put(txn, dbs, child_id, child.evolve(name=new_name, subscribed=subscribed))
    return mid, [i for _, i in moved], []


def _rename_inbox(txn: lmdb.Transaction, dbs: Dbs, user: str, inbox_id: int, target: str) -> tuple[int, list[int]]:
    """RFC 3501 6.3.5: move INBOX's messages to a new mailbox; INBOX stays, empty.

    Returns the new id and the UIDs that left INBOX: for INBOX's sessions (and QRESYNC's
    VANISHED) they are expunged, at INBOX's next MODSEQ, like any expunge."""
    inbox = by_id(txn, dbs, user, inbox_id)
    new_id, new_rec = create(txn, dbs, user, target)
    prefix = U64.pack(inbox_id)
    cur = txn.cursor(db=dbs.messages)
    uid = 0
    left: list[int] = []
    indexed: list[tuple[int, MessageRecord, bytes]] = []
    if cur.set_range(prefix):
        while bytes(cur.key()).startswith(prefix):
            rec = MessageRecord.unpack(cur.value())
            old_uid = MSG_KEY.unpack(bytes(cur.key()))[1]
            left.append(old_uid)
            uid += 1
            key = MSG_KEY.pack(new_id, uid)
            moved = rec.evolve(modseq=1, added_modseq=1)
            txn.put(key, moved.pack(), db=dbs.messages)
            saved = save_dates.get(txn, dbs, inbox_id, old_uid)
            if saved is not None:
                save_dates.put(txn, dbs, new_id, uid, saved)
            if rec.deleted:
                txn.put(key, b"", db=dbs.deleted)
            indexed.append((uid, moved, mailbox_index.text_of(txn, dbs, inbox_id, old_uid, rec.body_id)))
            if not cur.delete():
                break
    mailbox_index.added(txn, dbs, new_id, indexed)
    for db in (dbs.deleted, dbs.flag_index, dbs.flag_members, dbs.header_index, dbs.save_dates):
        _delete_prefix(txn, db, prefix)
    put(
        txn,
        dbs,
        new_id,
        new_rec.evolve(
            uidnext=uid + 1,
            messages=inbox.messages,
            unseen=inbox.unseen,
            deleted=inbox.deleted,
            size=inbox.size,
        ),
    )
    expunged_at = inbox.highestmodseq + 1
    tombstones.put(txn, dbs.vanished, inbox_id, expunged_at, left)
    put(txn, dbs, inbox_id, inbox.evolve(messages=0, unseen=0, deleted=0, size=0, highestmodseq=expunged_at))
    return new_id, left


def status(record: MailboxRecord) -> store_pb2.MailboxStatus:
    return store_pb2.MailboxStatus(
        messages=record.messages,
        unseen=record.unseen,
        uidnext=record.uidnext,
        uidvalidity=record.uidvalidity,
        highestmodseq=record.highestmodseq,
        size=record.size,
        deleted=record.deleted,
    )


def info(record: MailboxRecord, mid: int, has_children: bool, with_status: bool) -> store_pb2.MailboxInfo:
    out = store_pb2.MailboxInfo(
        name=record.name,
        mailbox_id=mid,
        special_use=record.special_use,
        subscribed=record.subscribed,
        has_children=has_children,
        noselect=record.noselect,
    )
    if with_status:
        out.status.CopyFrom(status(record))
    return out


def list_all(
    txn: lmdb.Transaction, dbs: Dbs, user: str, with_status: bool, subscribed_only: bool
) -> list[store_pb2.MailboxInfo]:
    entries = user_mailboxes(txn, dbs, user)
    all_names = {n for n, _ in entries}
    parents_with_children = {p for n in all_names for p in names.parents(n)}
    out: list[store_pb2.MailboxInfo] = []
    for name, mid in entries:
        record = by_id(txn, dbs, user, mid)
        if subscribed_only and not record.subscribed:
            continue
        entry = info(record, mid, name in parents_with_children, with_status)
        if with_status:
            entry.status.recent = recent.count(txn, dbs, mid)
        out.append(entry)
    for name in subscriptions.names(txn, dbs, user):
        if name not in all_names:
            out.append(store_pb2.MailboxInfo(name=name, subscribed=True, nonexistent=True))
    return out
