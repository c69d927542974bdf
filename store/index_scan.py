"""The read side of the flag and header indexes: the MailboxIndex.Scan reply.

Segments wholly inside the asked UID range are passed on as the raw column
bytes they are stored as (little-endian both on disk and on the wire), so a
FETCH 1:* (FLAGS) of 50,000 messages costs the store ~800 LMDB reads and a
few joins, not 50,000 record decodings. A flag filter without MODSEQs, sizes
or dates (SEARCH UNSEEN) reads only the UID lists of the flag sets that pass
(`flag_members`): its cost follows the answer, not the mailbox.
"""

from __future__ import annotations

import array
import bisect
import struct
import sys
from collections.abc import Iterator
from typing import Final

import lmdb

from mailha_api import mailbox_index_pb2 as pb
from store import flag_members, flag_sets, fulltext, header_index, mailboxes, message_facts, messages, names, uidset
from store.errors import InvalidArgument
from store.flag_index import COLUMNS, SEGMENT_BITS, column_slices
from store.fulltext import FullTextIndex
from store.le_columns import to_array
from store.schema import MSG_KEY, U64, Dbs

CHUNK_MESSAGES: Final = 4096
_U32: Final = struct.Struct("<I")
_SIZES_DATES: Final = (3, 4, 5)  # column positions of size, date, zone
# Rows of several flag sets are merged into UID order here up to this many; a larger
# answer of several flag sets comes from the segments (whole columns, no sort).
MERGE_MAX: Final = 8192


def _le_u32(values: list[int]) -> bytes:
    a = array.array("I", values)
    if sys.byteorder == "big":
        a.byteswap()
    return a.tobytes()


class _ChunkBuilder:
    def __init__(self, txn: lmdb.Transaction, dbs: Dbs, mid: int, with_sizes_dates: bool, with_sort_keys: bool) -> None:
        self.txn = txn
        self.dbs = dbs
        self.mid = mid
        self.with_sort_keys = with_sort_keys
        self.columns = range(len(COLUMNS)) if with_sizes_dates else range(3)
        self.parts: list[list[bytes]] = [[] for _ in COLUMNS]
        self.count = 0
        self.known: set[int] = set()

    def add(self, n: int, slices: list[bytes], start: int, end: int) -> None:
        whole = start == 0 and end == n
        for i in self.columns:
            piece = slices[i]
            if not whole:
                width = COLUMNS[i][1]
                piece = piece[start * width : end * width]
            self.parts[i].append(piece)
        self.count += end - start

    def take(self, chunk: pb.IndexChunk) -> pb.IndexChunk:
        joined = [b"".join(p) for p in self.parts]
        new_ids = set(to_array("I", joined[1])) - self.known  # once per chunk, not per segment
        chunk.uids, chunk.flag_ids, chunk.modseqs = joined[0], joined[1], joined[2]
        if self.with_sort_keys:
            chunk.sort_keys.extend(
                message_facts.sort_keys_of_uids(self.txn, self.dbs, self.mid, to_array("I", joined[0]))
            )
        if len(self.columns) == len(COLUMNS):
            chunk.sizes, chunk.dates, chunk.tz_offsets = joined[3], joined[4], joined[5]
        for fid in sorted(new_ids):
            chunk.flag_sets.add(id=fid, flags=flag_sets.flags_of(self.txn, self.dbs, fid))
        self.known |= new_ids
        self.parts = [[] for _ in COLUMNS]
        self.count = 0
        return chunk


class FlagFilter:
    """Which flag-set ids hold every flag of `with_flags` and none of `without_flags`
    (casefolded, as IMAP compares flags); each id's flags are read once per scan."""

    def __init__(self, txn: lmdb.Transaction, dbs: Dbs, with_flags: frozenset[str], without_flags: frozenset[str]):
        self.txn = txn
        self.dbs = dbs
        self.with_flags = with_flags
        self.without_flags = without_flags
        self._passes: dict[int, bool] = {}

    def passes(self, fid: int) -> bool:
        known = self._passes.get(fid)
        if known is None:
            held = {f.lower() for f in flag_sets.flags_of(self.txn, self.dbs, fid)}
            known = self._passes[fid] = self.with_flags <= held and held.isdisjoint(self.without_flags)
        return known

    def runs(self, flag_ids: bytes, start: int, end: int) -> list[tuple[int, int]]:
        """The [a, b) runs of rows in [start, end) of a segment whose flag-set id passes."""
        column = flag_ids[start * 4 : end * 4]
        distinct = set(to_array("I", column))
        good = {fid for fid in distinct if self.passes(fid)}
        if len(good) == len(distinct):
            return [(start, end)]
        if not good:
            return []
        bad = distinct - good
        # Find the rows of the rarer side by searching the column's bytes (no loop per row).
        keep = _rows_of(column, good) if len(good) <= len(bad) else None
        if keep is None:
            skip = _rows_of(column, bad)
            skipped = set(skip)
            keep = [i for i in range(end - start) if i not in skipped] if len(skip) < end - start else []
        out: list[tuple[int, int]] = []
        for i in keep:
            row = start + i
            if out and out[-1][1] == row:
                out[-1] = (out[-1][0], row + 1)
            else:
                out.append((row, row + 1))
        return out


def _rows_of(column: bytes, fids: set[int]) -> list[int]:
    """The rows (ascending) of a little-endian u32 column holding one of `fids`."""
    rows: list[int] = []
    for fid in fids:
        pattern = fid.to_bytes(4, "little")
        at = column.find(pattern)
        while at >= 0:
            if at % 4:
                at = column.find(pattern, at + 1)
                continue
            rows.append(at // 4)
            at = column.find(pattern, at + 4)
    rows.sort()
    return rows


def flag_set_rows(
    txn: lmdb.Transaction, dbs: Dbs, mid: int, ranges: list[tuple[int, int]], flag_filter: FlagFilter
) -> tuple[bytes, bytes, list[int]] | None:
    """(UIDs, flag-set ids, the ids present) of the messages of `ranges` whose flag set passes,
    from the UID lists per flag set; None when several flag sets hold more than MERGE_MAX."""
    lists: list[tuple[int, bytes]] = []
    for fid in flag_members.flag_ids(txn, dbs.flag_members, mid):
        if flag_filter.passes(fid):
            raw = flag_members.uids_in(txn, dbs.flag_members, mid, fid, ranges)
            if raw:
                lists.append((fid, raw))
    if len(lists) <= 1:
        if not lists:
            return b"", b"", []
        fid, raw = lists[0]
        return raw, _le_u32([fid]) * (len(raw) // 4), [fid]
    if sum(len(raw) for _, raw in lists) // 4 > MERGE_MAX:
        return None
    rows = sorted((uid, fid) for fid, raw in lists for uid in to_array("I", raw))
    return _le_u32([uid for uid, _ in rows]), _le_u32([fid for _, fid in rows]), [fid for fid, _ in lists]


def text_matches(  # noqa: PLR0917
    txn: lmdb.Transaction,
    dbs: Dbs,
    mid: int,
    ranges: list[tuple[int, int]],
    needle: str,
    body_only: bool,
    index: FullTextIndex | None,
) -> list[int]:
    """UIDs in `ranges` whose text holds `needle`: the full-text index up to its watermark,
    the messages above it (or all, for a needle the index cannot take) scanned."""
    found: set[int] = set()
    above = 0
    if index is not None and fulltext.indexable(needle):
        hits, mark = index.search(mid, needle, body_only)
        if hits is not None:
            above = mark
            wanted = [uid for uid in sorted(hits) if any(lo <= uid <= hi for lo, hi in ranges)]
            if fulltext.exact(needle):  # rows of expunged messages stay in the index: keep what exists
                found.update(uid for uid in wanted if txn.get(MSG_KEY.pack(mid, uid), db=dbs.messages))
            else:
                found.update(fulltext.check(txn, dbs, mid, wanted, needle, body_only=body_only))
    found.update(fulltext.scan_matches(txn, dbs, mid, ranges, needle, body_only=body_only, above=above))
    return sorted(found)


def scan(
    txn: lmdb.Transaction,
    dbs: Dbs,
    mid: int,
    ranges: list[tuple[int, int]],
    *,
    with_sizes_dates: bool,
    with_sort_keys: bool = False,
    queries: list[tuple[int, bytes]],
    text_queries: tuple[tuple[str, bool], ...] = (),
    fulltext: FullTextIndex | None = None,
    flag_filter: FlagFilter | None = None,
    without_modseqs: bool = False,
) -> Iterator[pb.IndexChunk]:
    """Chunks of columns for the UIDs of `ranges` (ordered, merged); at least one chunk."""
    first = pb.IndexChunk()
    for at, needle in queries:
        first.header_hits.add(
            uids=_le_u32(header_index.matching(txn, dbs.header_index, mid, ranges, at=at, needle=needle))
        )
    for text, body_only in text_queries:
        first.text_hits.add(uids=_le_u32(text_matches(txn, dbs, mid, ranges, text, body_only, fulltext)))
    if flag_filter is not None and without_modseqs and not with_sizes_dates and not with_sort_keys:
        rows = flag_set_rows(txn, dbs, mid, ranges, flag_filter)
        if rows is not None:
            yield from _row_chunks(txn, dbs, first, rows)
            return
    builder = _ChunkBuilder(txn, dbs, mid, with_sizes_dates, with_sort_keys)
    chunk = first
    ready: pb.IndexChunk | None = None  # a full chunk, sent once the next one shows it is not the last
    prefix = U64.pack(mid)
    cur = txn.cursor(db=dbs.flag_index)
    for lo, hi in ranges:
        if not cur.set_range(MSG_KEY.pack(mid, lo >> SEGMENT_BITS)):
            break
        last_segment = hi >> SEGMENT_BITS
        for key, value in cur:
            if key[:8] != prefix or MSG_KEY.unpack(key)[1] > last_segment:
                break
            n, slices = column_slices(bytes(value))
            if not n:
                continue
            column = slices[0]
            if _U32.unpack_from(column)[0] >= lo and _U32.unpack_from(column, 4 * n - 4)[0] <= hi:
                start, end = 0, n  # the whole segment (the usual case): no UID decoded
            else:
                uids = to_array("I", column)
                start, end = bisect.bisect_left(uids, lo), bisect.bisect_right(uids, hi)
            if start < end:
                if flag_filter is None:
                    builder.add(n, slices, start, end)
                else:
                    for a, b in flag_filter.runs(slices[1], start, end):
                        builder.add(n, slices, a, b)
            if builder.count >= CHUNK_MESSAGES:
                if ready is not None:
                    yield ready
                ready = builder.take(chunk)
                chunk = pb.IndexChunk()
    if builder.count or ready is None:
        if ready is not None:
            yield ready
        ready = builder.take(chunk)
    ready.last = True
    yield ready


def _row_chunks(
    txn: lmdb.Transaction, dbs: Dbs, first: pb.IndexChunk, rows: tuple[bytes, bytes, list[int]]
) -> Iterator[pb.IndexChunk]:
    """`flag_set_rows`' answer as UID and flag-id columns, CHUNK_MESSAGES rows a chunk."""
    uids, fids, present = rows
    for fid in present:
        first.flag_sets.add(id=fid, flags=flag_sets.flags_of(txn, dbs, fid))
    chunk = first
    step = CHUNK_MESSAGES * 4
    at = 0
    while True:
        chunk.uids, chunk.flag_ids = uids[at : at + step], fids[at : at + step]
        at += step
        chunk.last = at >= len(uids)
        yield chunk
        if chunk.last:
            return
        chunk = pb.IndexChunk()


def check_request(req: pb.IndexScanRequest) -> tuple[uidset.UidSet, str, list[tuple[int, bytes]]]:
    """Validate a scan before any transaction: (the parsed UID set, the user, the header queries)."""
    parsed = uidset.parse(req.uid_set)
    user = names.user_name(req.user)
    queries = [(q.field, bytes(q.needle)) for q in req.header_queries]
    if any(not needle for _, needle in queries):
        raise InvalidArgument("header query: the needle is empty")
    return parsed, user, queries


def scan_request(
    txn: lmdb.Transaction, dbs: Dbs, req: pb.IndexScanRequest, *, fulltext: FullTextIndex | None
) -> Iterator[pb.IndexChunk]:
    """The MailboxIndex.Scan answer in one read transaction: the store's servicer and an
    imapd beside the store (`store.reader`) both run this."""
    parsed, user, queries = check_request(req)
    mailboxes.selectable(txn, dbs, user, req.mailbox_id)
    ranges = parsed.resolve(messages.highest_uid(txn, dbs, req.mailbox_id))
    flag_filter = None
    if req.with_flags or req.without_flags:
        flag_filter = FlagFilter(
            txn, dbs, frozenset(f.lower() for f in req.with_flags), frozenset(f.lower() for f in req.without_flags)
        )
    return scan(
        txn,
        dbs,
        req.mailbox_id,
        ranges,
        with_sizes_dates=req.with_sizes_dates,
        with_sort_keys=req.with_sort_keys,
        queries=queries,
        text_queries=tuple((q.needle, q.body_only) for q in req.text_queries),
        fulltext=fulltext,
        flag_filter=flag_filter,
        without_modseqs=req.without_modseqs,
    )
