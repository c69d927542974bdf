"""FETCH and SEARCH of the selected mailbox answered from the store's indexes.

One `scan_index` call per command, whatever the number of messages: FETCH of
UID/FLAGS/MODSEQ/RFC822.SIZE/INTERNALDATE streams its lines chunk by chunk
(the first leave before the store has read the rest), SEARCH on flags,
keywords, sizes, dates, UIDs and SUBJECT/FROM/TO/CC/BCC evaluates whole
columns. Everything else takes the message-by-message path of
`message_commands`.
"""

from __future__ import annotations

import bisect

from imapd.message.index_fetch import IndexFetchRenderer, flag_list_bytes, needs_sizes_dates
from imapd.message.index_search import IndexPlan, IndexTable, flag_filter
from imapd.message.search_eval import SearchContext
from imapd.protocol.fetch_spec import FetchAttribute
from imapd.protocol.search_spec import SearchKey
from imapd.session.selected import SelectedMailbox
from imapd.session.session import Session
from imapd.store_client import IndexQuery
from store.uidset import format_uids


async def fetch_lines(
    s: Session,
    user: str,
    sel: SelectedMailbox,
    *,
    attrs: tuple[FetchAttribute, ...],
    uids: list[int],
    changed_since: int | None,
) -> int:
    """Emit the FETCH lines of `uids` (ascending, distinct); return how many the store had."""
    renderer = IndexFetchRenderer(attrs)
    query = IndexQuery(uid_text(uids), with_sizes_dates=needs_sizes_dates(attrs))
    flags: dict[int, bytes] = {}
    names_of: dict[int, tuple[str, ...]] = {}
    shows_flags = renderer.shows_flags
    session_uids = sel.uids
    total = len(session_uids)
    floor = changed_since or 0
    found = 0
    j = 0
    async for cols in s.ctx.store.scan_index(user, sel.mailbox_id, query):
        for fid, names in cols.flag_sets.items():
            flags[fid] = flag_list_bytes(names)
            names_of[fid] = names
            if shows_flags:  # * FLAGS before any FETCH shows a keyword new to this session
                for line in sel.announce_keywords(names):
                    s.emit(line)
        lines: list[bytes] = []
        sizes_dates = query.with_sizes_dates
        n = len(cols.uids)
        start = bisect.bisect_left(session_uids, cols.uids[0], j) if n else j
        recent = sel.recent
        if (
            renderer.only_uid_flags
            and not floor
            and n
            and (not recent or recent.isdisjoint(cols.uids))
            and session_uids[start : start + n] == list(cols.uids)
        ):
            # The usual case (UID FETCH 1:* (FLAGS)): the chunk is n consecutive messages of the session.
            line = b"* %d FETCH (UID %d FLAGS %s)\r\n"
            lines = [
                line % (seq, uid, flags[fid])
                for seq, uid, fid in zip(range(start + 1, start + n + 1), cols.uids, cols.flag_ids, strict=True)
            ]
            j = start + n
            found += n
            s.emit(b"".join(lines))
            await s.flush()
            continue
        for i, uid in enumerate(cols.uids):
            while j < total and session_uids[j] < uid:
                j += 1
            if j == total or session_uids[j] != uid:
                continue  # not in this session's view yet
            found += 1
            modseq = cols.modseqs[i]
            if modseq <= floor:
                continue
            fid = cols.flag_ids[i]
            # \Recent is this session's, not the store's (RFC 3501 2.3.2).
            shown = flag_list_bytes((*names_of[fid], "\\Recent")) if uid in recent else flags[fid]
            if sizes_dates:
                line = renderer.line(j + 1, uid, shown, modseq, cols.sizes[i], cols.dates[i], cols.tz_offsets[i])
            else:
                line = renderer.line(j + 1, uid, shown, modseq)
            lines.append(line)
        if lines:
            s.emit(b"".join(lines))
            await s.flush()
    return found


async def search_uids(
    s: Session, user: str, sel: SelectedMailbox, key: SearchKey, *, plan: IndexPlan, context: SearchContext
) -> list[tuple[int, int, int]]:
    """(seq, uid, modseq) of the matching messages, ascending."""
    with_flags, without_flags = flag_filter(key)
    query = IndexQuery(
        uid_text(sel.uids),
        with_sizes_dates=plan.needs_sizes_dates,
        header_queries=plan.header_queries,
        text_queries=plan.text_queries,
        with_flags=with_flags,
        without_flags=without_flags,
    )
    uids: list[int] = []
    fids: list[int] = []
    modseqs: list[int] = []
    sizes: list[int] = []
    dates: list[int] = []
    zones: list[int] = []
    flag_sets: dict[int, tuple[str, ...]] = {}
    hits: tuple[frozenset[int], ...] | None = None
    text_hits: tuple[frozenset[int], ...] = ()
    async for cols in s.ctx.store.scan_index(user, sel.mailbox_id, query):
        if hits is None:
            hits, text_hits = cols.header_hits, cols.text_hits
        uids.extend(cols.uids)
        fids.extend(cols.flag_ids)
        modseqs.extend(cols.modseqs)
        sizes.extend(cols.sizes)
        dates.extend(cols.dates)
        zones.extend(cols.tz_offsets)
        flag_sets.update(cols.flag_sets)
    table = IndexTable(uids, fids, modseqs, sizes, dates, zones)
    table.flag_sets = flag_sets
    table.header_hits = hits or ()
    table.text_hits = text_hits
    matched = table.evaluate(key, plan, context, sel.uids)
    matched -= sel.pending_expunged
    if not matched:
        return []
    modseq_of = dict(zip(uids, modseqs, strict=True))
    present, count = sel.uids, len(sel.uids)
    ordered = sorted(matched)
    if len(ordered) * 8 >= count:
        # Many matches: number them from one map built in C (a seq_of call per match was
        # most of a SEARCH's cost, issue 13).
        seq_of = dict(zip(present, range(1, count + 1), strict=True))
        return [(seq_of[uid], uid, modseq_of[uid]) for uid in ordered if uid in seq_of]
    out = []
    start = 0
    for uid in ordered:  # few matches in a big mailbox: bisect from the last hit
        i = bisect.bisect_left(present, uid, start)
        if i < count and present[i] == uid:
            out.append((i + 1, uid, modseq_of[uid]))
            start = i + 1
    return out


def uid_text(sorted_uids: list[int]) -> str:
    """The UID set of ascending, distinct UIDs; one range without a pass when there is no gap."""
    if sorted_uids and sorted_uids[-1] - sorted_uids[0] + 1 == len(sorted_uids):
        return f"{sorted_uids[0]}:{sorted_uids[-1]}"
    return format_uids(sorted_uids)
