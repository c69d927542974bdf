"""Messages: append, flags, copy/move, expunge, vanished, and the reads a session needs."""

from __future__ import annotations

import itertools
import logging
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import cast

import lmdb

from mailha_api import store_pb2
from store import (
    bodies,
    flag_members,
    flag_sets,
    mailbox_index,
    mailboxes,
    message_facts,
    save_dates,
    tombstones,
    uidset,
)
from store.batch_records import DirectRecords, Records
from store.errors import LimitExceeded
from store.names import MAX_KEYWORDS_PER_MAILBOX
from store.ordered_delete import delete_sorted
from store.schema import (
    MESSAGE_FLAGS_OFFSET,
    MSG_KEY,
    SIZE_AND_BODY,
    SIZE_AND_BODY_OFFSET,
    U64,
    Dbs,
    MailboxRecord,
    MessageRecord,
    msg_key,
    record_flags,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewMessage:
    source: bodies.BodySource
    flags: tuple[str, ...]
    internal_date: int  # unix seconds; 0 = now
    tz_offset_minutes: int
    # The indexed header text (mailbox_index.header_text); computed by the caller off the
    # committer thread when it can, else in append.
    header_text: bytes | None = None
    # message_facts.compute of its header block, made off the committer thread like header_text.
    facts: bytes | None = None
    # bodies.header_block of its first bytes (what body_meta keeps), when the caller has it.
    header_block: bytes | None = None


def source_head(source: bodies.BodySource) -> bytes:
    return source.head if source.data is None else source.data[: bodies.HEADER_SEARCH_LIMIT]


def meta(uid: int, rec: MessageRecord) -> store_pb2.MessageMeta:
    return store_pb2.MessageMeta(
        uid=uid,
        modseq=rec.modseq,
        flags=rec.flags,
        internal_date=rec.internal_date,
        tz_offset_minutes=rec.tz_offset_minutes,
        size=rec.size,
    )


def _counts(rec: MessageRecord) -> tuple[int, int]:
    """(unseen, deleted) contribution of one message."""
    return (0 if "\\Seen" in rec.flags else 1), (1 if "\\Deleted" in rec.flags else 0)


def charge_quota(txn: lmdb.Transaction, dbs: Dbs, user: str, added_bytes: int, added_messages: int) -> None:
    DirectRecords(txn, dbs).charge_quota(user, added_bytes, added_messages)


def _keywords(flags: Iterable[str]) -> set[str]:
    return {f for f in flags if f and f[0] != "\\"}


def check_keyword_room(txn: lmdb.Transaction, dbs: Dbs, mid: int, flags: Iterable[str]) -> None:
    """LimitExceeded if setting `flags` would give mailbox `mid` more than MAX_KEYWORDS_PER_MAILBOX keywords.

    Reads the mailbox's distinct flag lists only when a keyword is set, and stops as
    soon as every wanted keyword is found in use (the usual case: a known keyword).
    """
    wanted = _keywords(flags)
    if not wanted:
        return
    missing = set(wanted)
    present: set[str] = set()
    prefix = U64.pack(mid)
    seen_lists: set[bytes] = set()
    cur = txn.cursor(db=dbs.messages)
    if cur.set_range(prefix):
        for key, value in cur:
            if key[:8] != prefix:
                break
            raw = bytes(value[MESSAGE_FLAGS_OFFSET:])
            if raw in seen_lists:
                continue
            seen_lists.add(raw)
            found = _keywords(raw.decode("ascii").split(" "))
            present |= found
            missing -= found
            if not missing:
                return
    total = len(present | wanted)
    if total > MAX_KEYWORDS_PER_MAILBOX:
        raise LimitExceeded(
            f"the mailbox would hold {total} distinct keywords; at most {MAX_KEYWORDS_PER_MAILBOX} are allowed"
        )


def append(
    txn: lmdb.Transaction,
    dbs: Dbs,
    user: str,
    mid: int,
    items: list[NewMessage],
    *,
    records: Records | None = None,
) -> tuple[MailboxRecord, list[store_pb2.MessageMeta]]:
    """Append `items` to mailbox `mid` (all or nothing); return the new record and the metas.

    Every check that can fail (mailbox, quota) comes before the first write, so the
    committer may run a single append without a nested transaction (see batch_records).
    """
    recs = records if records is not None else DirectRecords(txn, dbs)
    record = recs.selectable(user, mid)
    check_keyword_room(txn, dbs, mid, (f for item in items for f in item.flags))
    recs.charge_quota(user, sum(i.source.size for i in items), len(items))
    now = int(time.time())
    uid, modseq = record.uidnext, record.highestmodseq
    unseen, deleted, size = record.unseen, record.deleted, record.size
    metas: list[store_pb2.MessageMeta] = []
    indexed: list[tuple[int, MessageRecord, bytes]] = []
    for item in items:
        modseq += 1
        body_id = bodies.store_body(txn, dbs, item.source, recs.next_body_id(), header=item.header_block)
        facts = item.facts
        if facts is None:
            head = source_head(item.source)
            facts = message_facts.compute(bodies.header_block(head), head)
        message_facts.put(txn, dbs, body_id, facts)
        rec = MessageRecord(
            modseq, modseq, item.internal_date or now, item.tz_offset_minutes, item.source.size, body_id, item.flags
        )
        key = msg_key(mid, uid)
        txn.put(key, rec.pack(), db=dbs.messages)
        save_dates.saved(txn, dbs, mid, uid, now, internal_date=rec.internal_date)
        u, d = _counts(rec)
        if d:
            txn.put(key, b"", db=dbs.deleted)
        unseen, deleted, size = unseen + u, deleted + d, size + rec.size
        metas.append(meta(uid, rec))
        text = item.header_text
        indexed.append((uid, rec, text if text is not None else mailbox_index.header_text(source_head(item.source))))
        uid += 1
    mailbox_index.added(txn, dbs, mid, indexed)
    record = record.evolve(
        uidnext=uid,
        highestmodseq=modseq,
        messages=record.messages + len(items),
        unseen=unseen,
        deleted=deleted,
        size=size,
    )
    recs.put_mailbox(mid, record)
    return record, metas


def resolved(txn: lmdb.Transaction, dbs: Dbs, mid: int, text: str) -> list[tuple[int, int]]:
    """The IMAP UID set `text` of `mid` as ordered, merged, closed ranges; the highest UID is
    read (a cursor walk) only when the set holds "*"."""
    uid = uidset.single(text)
    if uid is not None:
        return [(uid, uid)]  # FETCH 60: what parse + resolve give, without the UidSet and the sort
    parsed = uidset.parse(text)
    return parsed.resolve(highest_uid(txn, dbs, mid) if parsed.has_star else 0)


def highest_uid(txn: lmdb.Transaction, dbs: Dbs, mid: int) -> int:
    cur = txn.cursor(db=dbs.messages)
    if cur.set_range(MSG_KEY.pack(mid + 1, 0)):
        if not cur.prev():
            return 0
    elif not cur.last():
        return 0
    key = bytes(cur.key())
    if len(key) != MSG_KEY.size:
        return 0
    m, uid = MSG_KEY.unpack(key)
    return int(uid) if m == mid else 0


def set_pieces(txn: lmdb.Transaction, dbs: Dbs, mid: int, text: str, per_piece: int) -> list[str]:
    """The UID set `text` of `mid` cut into consecutive sets of at most `per_piece` existing
    messages (one piece, `text` itself, when it holds no more); "*" is resolved now.

    A flag change over a whole large mailbox in one transaction held the committer, the
    one thread every write of every user waits for, for as long as it took (a STORE 1:*
    over 1,000,000 messages: more than imapd's 30 s write deadline) and left LMDB a dirty
    page list as large as that transaction until the store closed; in pieces, the writes
    queued meanwhile go between them. Reads keys only.
    """
    ranges = resolved(txn, dbs, mid, text)
    cuts: list[int] = []  # the last UID of every full piece
    count = 0
    cur = txn.cursor(db=dbs.messages)
    for lo, hi in ranges:
        if not cur.set_range(MSG_KEY.pack(mid, lo)):
            break
        end = MSG_KEY.pack(mid, hi)
        for raw in cur.iternext(keys=True, values=False):
            key = bytes(raw)
            if key > end:
                break
            count += 1
            if count % per_piece == 0:
                cuts.append(MSG_KEY.unpack(key)[1])
    if cuts and count % per_piece == 0:
        cuts.pop()  # the last piece ends where the set ends anyway
    if not cuts:
        return [text]
    bounds = [0, *cuts, uidset.MAX_UID]
    pieces: list[str] = []
    for start, stop in itertools.pairwise(bounds):
        clipped = [(max(lo, start + 1), min(hi, stop)) for lo, hi in ranges if lo <= stop and hi > start]
        pieces.append(",".join(f"{a}:{b}" if a != b else str(a) for a, b in clipped if a <= b))
    return pieces


def in_set(txn: lmdb.Transaction, dbs: Dbs, mid: int, text: str) -> Iterator[tuple[int, MessageRecord]]:
    """(uid, record) of the messages of `mid` whose UID is in the IMAP UID set `text`."""
    return in_ranges(txn, dbs, mid, resolved(txn, dbs, mid, text))


def in_ranges(
    txn: lmdb.Transaction, dbs: Dbs, mid: int, ranges: list[tuple[int, int]]
) -> Iterator[tuple[int, MessageRecord]]:
    """(uid, record) of the messages of `mid` in resolved `ranges` (ascending, disjoint, inclusive)."""
    cur = txn.cursor(db=dbs.messages)
    for lo, hi in ranges:
        if not cur.set_range(MSG_KEY.pack(mid, lo)):
            return
        while True:
            key = bytes(cur.key())
            m, uid = MSG_KEY.unpack(key)
            if m != mid or uid > hi:
                break
            yield uid, MessageRecord.unpack(cur.value())
            if not cur.next():
                return


def all_messages(txn: lmdb.Transaction, dbs: Dbs, mid: int) -> Iterator[tuple[int, MessageRecord]]:
    prefix = U64.pack(mid)
    cur = txn.cursor(db=dbs.messages)
    if not cur.set_range(prefix):
        return
    for key, value in cur:
        key = bytes(key)
        if not key.startswith(prefix):
            return
        yield MSG_KEY.unpack(key)[1], MessageRecord.unpack(value)


def apply_flags(old: tuple[str, ...], mode: int, flags: tuple[str, ...]) -> tuple[str, ...]:
    if mode == store_pb2.FLAG_MODE_ADD:
        return tuple(sorted(set(old) | set(flags)))
    if mode == store_pb2.FLAG_MODE_REMOVE:
        return tuple(sorted(set(old) - set(flags)))
    return flags


# Up to this many UIDs, flags_unchanged reads the records instead of testing each flag set.
_FEW_RECORDS = 16


def flags_unchanged(txn: lmdb.Transaction, dbs: Dbs, mid: int, text: str, *, mode: int, flags: tuple[str, ...]) -> bool:
    """Whether a STORE of `flags` in `mode` on the UID set `text` would change no message:
    per flag set the mailbox uses (`flag_members`), the same `apply_flags` test as
    `store_flags`, and for a set it would change, whether the UID set holds one of its
    messages; no message record read. STORE 1:* +FLAGS (\\Seen) on a read mailbox."""
    uid = uidset.single(text)
    if uid is not None:
        # One UID (STORE 1 +FLAGS \Seen, the usual no-op): one get and the record's flags,
        # no cursor and no record decoded.
        raw = txn.get(MSG_KEY.pack(mid, uid), db=dbs.messages)
        if raw is None:
            return True  # no such message: nothing to change (as the walk below finds)
        old = record_flags(raw)
        return apply_flags(old, mode, flags) == old
    ranges = resolved(txn, dbs, mid, text)
    if sum(hi - lo + 1 for lo, hi in ranges) <= _FEW_RECORDS:
        # A few UIDs (STORE 1 +FLAGS \Seen): their records cost fewer reads than a test per
        # flag set the mailbox uses; the records are what the index is derived from.
        return all(apply_flags(rec.flags, mode, flags) == rec.flags for _, rec in in_ranges(txn, dbs, mid, ranges))
    for fid in flag_members.flag_ids(txn, dbs.flag_members, mid):
        current = flag_sets.flags_of(txn, dbs, fid)
        if apply_flags(current, mode, flags) != current and flag_members.holds_any(
            txn, dbs.flag_members, mid, fid, ranges
        ):
            return False
    return True


def store_flags(
    txn: lmdb.Transaction,
    dbs: Dbs,
    user: str,
    mid: int,
    *,
    text: str,
    mode: int,
    flags: tuple[str, ...],
    unchanged_since: int | None,
) -> store_pb2.StoreFlagsReply:
    record = mailboxes.selectable(txn, dbs, user, mid)
    if mode != store_pb2.FLAG_MODE_REMOVE:
        check_keyword_room(txn, dbs, mid, flags)
    reply = store_pb2.StoreFlagsReply()
    if unchanged_since is None and flags_unchanged(txn, dbs, mid, text, mode=mode, flags=flags):
        reply.highestmodseq = record.highestmodseq
        return reply
    modseq = record.highestmodseq + 1
    unseen, deleted = record.unseen, record.deleted
    changes: list[tuple[int, MessageRecord, int]] = []  # uid, new record, change of the \\Deleted count
    for uid, rec in in_set(txn, dbs, mid, text):
        if unchanged_since is not None and rec.modseq > unchanged_since:
            reply.modified.append(uid)
            continue
        new_flags = apply_flags(rec.flags, mode, flags)
        if new_flags == rec.flags:
            continue
        new = rec.evolve(flags=new_flags, modseq=modseq)
        u0, d0 = _counts(rec)
        u1, d1 = _counts(new)
        unseen += u1 - u0
        deleted += d1 - d0
        changes.append((uid, new, d1 - d0))
    for uid, rec, deleted_change in changes:
        key = msg_key(mid, uid)
        txn.put(key, rec.pack(), db=dbs.messages)
        if deleted_change > 0:
            txn.put(key, b"", db=dbs.deleted)
        elif deleted_change < 0:
            txn.delete(key, db=dbs.deleted)
        reply.updated.append(meta(uid, rec))
    if changes:
        mailbox_index.reflagged(txn, dbs, mid, ((uid, rec) for uid, rec, _ in changes))
        record = record.evolve(highestmodseq=modseq, unseen=unseen, deleted=deleted)
        mailboxes.put(txn, dbs, mid, record)
    reply.highestmodseq = record.highestmodseq
    return reply


@dataclass(frozen=True)
class Victims:
    """What removing messages needs of their records. EXPUNGE reads it from the packed
    records without decoding them (a MessageRecord per message was a third of its apply)."""

    keys: list[bytes]  # (mailbox, uid) keys, ascending
    body_ids: list[int]  # in the keys' order
    size: int  # their bytes together
    unseen: int  # how many lack \Seen
    deleted_keys: list[bytes]  # the keys of those flagged \Deleted, ascending

    @property
    def uids(self) -> list[int]:
        # One unpack of the keys joined (a UID after each 8-byte mailbox id), not one per key.
        return list(struct.unpack(">" + "8xI" * len(self.keys), b"".join(self.keys)))

    @classmethod
    def of_records(cls, mid: int, items: list[tuple[int, MessageRecord]]) -> Victims:
        """Of decoded records (uid, record) (MOVE has them decoded already)."""
        items = sorted(items, key=lambda item: item[0])
        keys = [MSG_KEY.pack(mid, uid) for uid, _ in items]
        return cls(
            keys=keys,
            body_ids=[rec.body_id for _, rec in items],
            size=sum(rec.size for _, rec in items),
            unseen=sum(1 for _, rec in items if "\\Seen" not in rec.flags),
            deleted_keys=[key for key, (_, rec) in zip(keys, items, strict=True) if "\\Deleted" in rec.flags],
        )


def remove(
    txn: lmdb.Transaction, dbs: Dbs, user: str, mid: int, victims: Victims, *, keep_bodies: bool
) -> MailboxRecord:
    """Remove `victims` from `mid` leaving tombstones; `keep_bodies` when MOVE hands them on."""
    record = mailboxes.by_id(txn, dbs, user, mid)
    if not victims.keys:
        return record
    modseq = record.highestmodseq + 1
    # EXPUNGE of 1,000 runs this in the committer, the one thread every write waits for:
    # the keys as they were read, each database walked once in key order.
    delete_sorted(txn, dbs.messages, victims.keys)
    delete_sorted(txn, dbs.deleted, victims.deleted_keys)
    if not keep_bodies:
        bodies.decref_all(txn, dbs, victims.body_ids)
    save_dates.remove(txn, dbs, victims.keys)
    uids = victims.uids
    tombstones.put(txn, dbs.vanished, mid, modseq, uids)
    mailbox_index.removed(txn, dbs, mid, uids)
    record = record.evolve(
        highestmodseq=modseq,
        messages=record.messages - len(uids),
        unseen=record.unseen - victims.unseen,
        deleted=record.deleted - len(victims.deleted_keys),
        size=record.size - victims.size,
    )
    mailboxes.put(txn, dbs, mid, record)
    if not keep_bodies:
        charge_quota(txn, dbs, user, -victims.size, -len(uids))
    return record


def deleted_in(txn: lmdb.Transaction, dbs: Dbs, mid: int, text: str) -> Victims:
    """The \\Deleted messages of `mid` (in the UID set `text` if given), as `remove` wants them.

    Reads the `deleted` index, so the cost follows the number of \\Deleted messages, not
    the mailbox size: EXPUNGE runs in the committer, the one thread every write waits for.
    Of each record only its size, body id and whether it is \\Seen are read.
    """
    ranges = resolved(txn, dbs, mid, text) if text else [(0, uidset.MAX_UID)]
    cur = txn.cursor(db=dbs.deleted)
    keys: list[bytes] = []
    for lo, hi in ranges:
        if not cur.set_range(MSG_KEY.pack(mid, lo)):
            break
        end = MSG_KEY.pack(mid, hi)  # keys are big-endian (mailbox, uid): past it is past the range
        # The walk in C: keys up to `end`, no Python step per key (bytes, as the store's
        # transactions are opened without buffers=True).
        walk = cast("Iterator[bytes]", cur.iternext(keys=True, values=False))
        keys.extend(itertools.takewhile(end.__ge__, walk))
    # One call for every record (LMDB's getmulti) instead of a get per message.
    found = cast("list[tuple[bytes, bytes]]", txn.cursor(db=dbs.messages).getmulti(keys))
    if len(found) != len(keys):  # cannot happen: every write keeps the index in the message's transaction
        missing = sorted(set(keys) - {bytes(k) for k, _ in found})
        log.error(
            "deleted index names %d missing messages (mailbox %d, uids %s)",
            len(missing),
            mid,
            [MSG_KEY.unpack(k)[1] for k in missing[:10]],
        )
        keys = [bytes(k) for k, _ in found]
    unpack, at, flags_at = SIZE_AND_BODY.unpack_from, SIZE_AND_BODY_OFFSET, MESSAGE_FLAGS_OFFSET
    body_ids: list[int] = []
    size = unseen = 0
    for _, raw in found:
        length, body_id = unpack(raw, at)
        size += length
        body_ids.append(body_id)
        if b"\\Seen" not in raw[flags_at:].split(b" "):
            unseen += 1
    return Victims(keys=keys, body_ids=body_ids, size=size, unseen=unseen, deleted_keys=keys)


def any_deleted_in(txn: lmdb.Transaction, dbs: Dbs, mid: int, text: str) -> bool:
    """Whether `mid` has a \\Deleted message (in the UID set `text` if given): one seek in
    the `deleted` index per range, no record read (EXPUNGE with nothing to remove)."""
    ranges = resolved(txn, dbs, mid, text) if text else [(0, uidset.MAX_UID)]
    cur = txn.cursor(db=dbs.deleted)
    for lo, hi in ranges:
        if not cur.set_range(MSG_KEY.pack(mid, lo)):
            return False
        m, uid = MSG_KEY.unpack(bytes(cur.key()))
        if m != mid:
            return False
        if uid <= hi:
            return True
    return False


def expunge(txn: lmdb.Transaction, dbs: Dbs, user: str, mid: int, text: str) -> tuple[MailboxRecord, list[int]]:
    mailboxes.selectable(txn, dbs, user, mid)
    victims = deleted_in(txn, dbs, mid, text)
    record = remove(txn, dbs, user, mid, victims, keep_bodies=False)
    return record, victims.uids


def copy(
    txn: lmdb.Transaction, dbs: Dbs, user: str, mid: int, *, text: str, dest_name: str, move: bool
) -> tuple[store_pb2.CopyReply, int, list[store_pb2.MessageMeta], MailboxRecord, MailboxRecord]:
    """COPY or MOVE; returns (reply, dest id, dest metas, source record, dest record)."""
    mailboxes.selectable(txn, dbs, user, mid)
    dest_id, dest = mailboxes.lookup(txn, dbs, user, dest_name)
    dest = mailboxes.selectable(txn, dbs, user, dest_id)
    sources = list(in_set(txn, dbs, mid, text))
    reply = store_pb2.CopyReply(dest_uidvalidity=dest.uidvalidity)
    if not sources:
        return reply, dest_id, [], mailboxes.by_id(txn, dbs, user, mid), dest
    check_keyword_room(txn, dbs, dest_id, {f for _, rec in sources for f in rec.flags})
    if not move:
        charge_quota(txn, dbs, user, sum(r.size for _, r in sources), len(sources))
    uid, modseq = dest.uidnext, dest.highestmodseq + 1
    unseen, deleted, size = dest.unseen, dest.deleted, dest.size
    now = int(time.time())
    metas: list[store_pb2.MessageMeta] = []
    indexed: list[tuple[int, MessageRecord, bytes]] = []
    texts = mailbox_index.texts_of(txn, dbs, mid, sources)
    for (src_uid, rec), header_text in zip(sources, texts, strict=True):
        if not move:
            bodies.incref(txn, dbs, rec.body_id)
        new = rec.evolve(modseq=modseq, added_modseq=modseq)
        key = msg_key(dest_id, uid)
        txn.put(key, new.pack(), db=dbs.messages)
        save_dates.saved(txn, dbs, dest_id, uid, now, internal_date=new.internal_date)
        u, d = _counts(new)
        if d:
            txn.put(key, b"", db=dbs.deleted)
        unseen, deleted, size = unseen + u, deleted + d, size + new.size
        reply.source_uids.append(src_uid)
        reply.dest_uids.append(uid)
        metas.append(meta(uid, new))
        indexed.append((uid, new, header_text))
        uid += 1
    mailbox_index.added(txn, dbs, dest_id, indexed)
    dest = dest.evolve(
        uidnext=uid,
        highestmodseq=modseq,
        messages=dest.messages + len(sources),
        unseen=unseen,
        deleted=deleted,
        size=size,
    )
    mailboxes.put(txn, dbs, dest_id, dest)
    source = mailboxes.by_id(txn, dbs, user, mid)
    if move:
        # Same-mailbox MOVE: the copies above are already in `dest`; removing the originals is what remains.
        source = remove(txn, dbs, user, mid, Victims.of_records(mid, sources), keep_bodies=True)
        reply.expunged.extend(u for u, _ in sources)
        if mid == dest_id:
            dest = source
    return reply, dest_id, metas, source, dest


def vanished(txn: lmdb.Transaction, dbs: Dbs, mid: int, since: int, text: str) -> list[int]:
    ranges = uidset.parse(text).resolve(uidset.MAX_UID) if text else None
    return tombstones.since(txn, dbs.vanished, mid, since, ranges)


def changes_since(
    txn: lmdb.Transaction, dbs: Dbs, mid: int, record: MailboxRecord, since: int
) -> store_pb2.ChangeEvent:
    """One event describing everything after `since`: what a resubscribing Watch missed."""
    event = store_pb2.ChangeEvent(mailbox_id=mid, modseq=record.highestmodseq)
    for uid, rec in all_messages(txn, dbs, mid):
        if rec.added_modseq > since:
            event.added.append(meta(uid, rec))
        elif rec.modseq > since:
            event.flags.append(meta(uid, rec))
    event.expunged.extend(vanished(txn, dbs, mid, since, ""))
    return event
