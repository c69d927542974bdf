"""Keeps the flag index and the header index in step with the message records.

Every write that adds, re-flags, removes or moves message records calls one
of these in its own transaction, so the indexes never disagree with the
records after a crash (LMDB commits all or nothing). An environment written
before the indexes existed gets them built when it is opened (`build`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import lmdb

from mailparse.search_fields import indexed_text
from store import bodies, flag_members, flag_sets, header_index
from store.flag_index import FlagIndexWriter, Segment, column_slices
from store.flag_members import MembersWriter
from store.header_index import HeaderIndexWriter
from store.le_columns import to_array
from store.schema import MSG_KEY, Dbs, MessageRecord

log = logging.getLogger(__name__)
_BUILD_BATCH = 4096


def header_text(source_head: bytes) -> bytes:
    """The indexed header text of a new message from its first bytes."""
    return indexed_text(bodies.header_block(source_head))


def added(txn: lmdb.Transaction, dbs: Dbs, mid: int, items: Iterable[tuple[int, MessageRecord, bytes]]) -> None:
    """New records (append, copy, move, rename of INBOX): (uid, record, indexed header text)."""
    flags = FlagIndexWriter(txn, dbs.flag_index, dbs.flag_members, mid)
    headers = HeaderIndexWriter(txn, dbs.header_index, mid)
    ids: dict[tuple[str, ...], int] = {}  # COPY of 1,000: a handful of flag lists, not 1,000 look-ups
    for uid, rec, text in items:
        fid = ids.get(rec.flags)
        if fid is None:
            fid = ids[rec.flags] = flag_sets.intern(txn, dbs, rec.flags)
        flags.put(uid, fid, rec.modseq, size=rec.size, date=rec.internal_date, tz=rec.tz_offset_minutes)
        headers.put(uid, text)
    flags.flush()
    headers.flush()


def reflagged(txn: lmdb.Transaction, dbs: Dbs, mid: int, items: Iterable[tuple[int, MessageRecord]]) -> None:
    flags = FlagIndexWriter(txn, dbs.flag_index, dbs.flag_members, mid)
    ids: dict[tuple[str, ...], int] = {}
    for uid, rec in items:
        fid = ids.get(rec.flags)
        if fid is None:
            fid = ids[rec.flags] = flag_sets.intern(txn, dbs, rec.flags)
        flags.put(uid, fid, rec.modseq, size=rec.size, date=rec.internal_date, tz=rec.tz_offset_minutes)
    flags.flush()


def removed(txn: lmdb.Transaction, dbs: Dbs, mid: int, uids: Sequence[int]) -> None:
    """Both indexes without the messages `uids` (ascending, distinct)."""
    gone = uids
    flags = FlagIndexWriter(txn, dbs.flag_index, dbs.flag_members, mid)
    flags.remove_all(gone)
    flags.flush()
    headers = HeaderIndexWriter(txn, dbs.header_index, mid)
    headers.remove_all(gone)
    headers.flush()


def text_of(txn: lmdb.Transaction, dbs: Dbs, mid: int, uid: int, body_id: int) -> bytes:
    """The indexed header text of a stored message (from its header block if the index lacks it)."""
    text = header_index.text_of(txn, dbs.header_index, mid, uid)
    if text is None:
        text = indexed_text(bodies.read_header(txn, dbs, body_id))
    return text


def texts_of(txn: lmdb.Transaction, dbs: Dbs, mid: int, items: list[tuple[int, MessageRecord]]) -> list[bytes]:
    """`text_of` for many stored messages (uid, record) of one mailbox, in their order."""
    known = header_index.texts_of(txn, dbs.header_index, mid, (uid for uid, _ in items))
    return [
        text if (text := known.get(uid)) is not None else indexed_text(bodies.read_header(txn, dbs, rec.body_id))
        for uid, rec in items
    ]


def build(txn: lmdb.Transaction, dbs: Dbs) -> int:
    """Fill both indexes from the message records and header blocks; return the messages indexed."""
    count = 0
    current: int | None = None
    batch: list[tuple[int, MessageRecord, bytes]] = []
    for key, value in txn.cursor(db=dbs.messages):
        mid, uid = MSG_KEY.unpack(bytes(key))
        if mid != current:
            if current is not None:
                added(txn, dbs, current, batch)
            current, batch = mid, []
        rec = MessageRecord.unpack(value)
        batch.append((uid, rec, indexed_text(bodies.read_header(txn, dbs, rec.body_id))))
        count += 1
        if len(batch) >= _BUILD_BATCH:  # bounded memory for a mailbox of millions
            added(txn, dbs, mid, batch)
            batch = []
    if current is not None:
        added(txn, dbs, current, batch)
    if count:
        log.info("built the flag and header indexes of %d messages", count)
    return count


def build_members(txn: lmdb.Transaction, dbs: Dbs) -> int:
    """Fill `flag_members` from the flag index (an environment written before it existed)."""
    count = pending = 0
    writer: MembersWriter | None = None
    for key, value in txn.cursor(db=dbs.flag_index):
        mid, _ = MSG_KEY.unpack(bytes(key))
        if writer is None or writer.mailbox_id != mid or pending >= _BUILD_BATCH:  # bounded memory
            if writer is not None:
                writer.flush()
            writer = MembersWriter(txn, dbs.flag_members, mid)
            pending = 0
        _, slices = column_slices(bytes(value))
        for uid, fid in zip(to_array("I", slices[0]), to_array("I", slices[1]), strict=True):
            writer.move(uid, None, fid)
            count += 1
            pending += 1
    if writer is not None:
        writer.flush()
    if count:
        log.info("built the per-flag-set UID lists of %d messages", count)
    return count


def disagreements(txn: lmdb.Transaction, dbs: Dbs, limit: int = 20) -> list[str]:
    """Where the indexes and the message records differ (empty when they agree): a check, slow."""
    expected: dict[tuple[int, int], tuple[tuple[str, ...], int, int, int, int]] = {}
    texts: dict[tuple[int, int], bytes] = {}
    for key, value in txn.cursor(db=dbs.messages):
        mid, uid = MSG_KEY.unpack(bytes(key))
        rec = MessageRecord.unpack(value)
        expected[mid, uid] = (rec.flags, rec.modseq, rec.size, rec.internal_date, rec.tz_offset_minutes)
        texts[mid, uid] = indexed_text(bodies.read_header(txn, dbs, rec.body_id))
    found: dict[tuple[int, int], tuple[tuple[str, ...], int, int, int, int]] = {}
    members_expected: dict[tuple[int, int], int] = {}
    for key, value in txn.cursor(db=dbs.flag_index):
        mid, _ = MSG_KEY.unpack(bytes(key))
        cols = Segment(bytes(value)).columns
        for uid, fid, modseq, size, date, tz in zip(*cols, strict=True):
            found[mid, uid] = (flag_sets.flags_of(txn, dbs, fid), modseq, size, date, tz)
            members_expected[mid, uid] = fid
    out: list[str] = []
    by_flag_set: dict[tuple[int, int], int] = {}
    every: set[tuple[int, int]] = set()
    try:
        for mid, fid, uid in flag_members.entries(txn, dbs.flag_members):
            if fid == flag_members.EVERY:
                every.add((mid, uid))
                continue
            if (mid, uid) in by_flag_set:
                out.append(f"flag members {(mid, uid)}: listed under {by_flag_set[mid, uid]} and {fid}")
            by_flag_set[mid, uid] = fid
    except ValueError as exc:
        out.append(str(exc))
    found_texts: dict[tuple[int, int], bytes] = {}
    for key, value in txn.cursor(db=dbs.header_index):
        mid, _ = MSG_KEY.unpack(bytes(key))
        for uid, text in header_index.entries(bytes(value)):
            found_texts[mid, uid] = text
    for where in sorted(expected.keys() | found.keys()):
        if expected.get(where) != found.get(where):
            out.append(f"flag index {where}: record {expected.get(where)} index {found.get(where)}")
    if every != members_expected.keys():
        differ = sorted(every ^ members_expected.keys())[:8]
        out.append(f"flag members: the lists of every message differ from the flag index at {differ}")
    for where in sorted(members_expected.keys() | by_flag_set.keys()):
        if members_expected.get(where) != by_flag_set.get(where):
            out.append(f"flag members {where}: flag index {members_expected.get(where)} lists {by_flag_set.get(where)}")
    for where in sorted(texts.keys() | found_texts.keys()):
        if texts.get(where) != found_texts.get(where):
            out.append(f"header index {where}: record {texts.get(where)!r} index {found_texts.get(where)!r}")
    return out[:limit]
