"""FETCH and SEARCH of the selected mailbox answered from the store's indexes.

One `scan_index` call per command, whatever the number of messages: FETCH of
UID/FLAGS/MODSEQ/RFC822.SIZE/INTERNALDATE streams its lines chunk by chunk
(the first leave before the store has read the rest), SEARCH on flags,
keywords, sizes, dates, UIDs and SUBJECT/FROM/TO/CC/BCC evaluates whole
columns. Everything else takes the message-by-message path of
`message_commands`.
"""

from __future__ import annotations

import array
import bisect
from collections.abc import AsyncIterator, Sequence

from imapd.message.index_fetch import IndexFetchRenderer, flag_list_bytes, needs_sizes_dates
from imapd.message.index_search import IndexPlan, IndexTable, flag_filter
from imapd.message.search_eval import SearchContext
from imapd.protocol.fetch_spec import FetchAttribute
from imapd.protocol.search_spec import AndKey, FlagKey, SearchKey
from imapd.session.selected import SelectedMailbox
from imapd.session.session import Session
from imapd.store_client import IndexColumns, IndexQuery

# FETCH from the index reads more than ONE_READ_UPTO asked messages in pieces: FIRST_PIECE,
# then PIECE_GROWTH times the last, up to MAX_PIECE (a read of 32,768 takes ~2 ms, less than a
# client takes to parse the ~130 KB a loopback socket holds). Not Final: a test makes them small.
ONE_READ_UPTO = 2048
FIRST_PIECE = 256
PIECE_GROWTH = 8
MAX_PIECE = 32_768


async def fetch_lines(
    s: Session,
    user: str,
    sel: SelectedMailbox,
    *,
    attrs: tuple[FetchAttribute, ...],
    uids: Sequence[int],
    changed_since: int | None,
) -> int:
    """Emit the FETCH lines of `uids` (ascending, distinct); return how many the store had."""
    renderer = IndexFetchRenderer(attrs)
    with_sizes_dates = needs_sizes_dates(attrs)
    flags: dict[int, bytes] = {}
    names_of: dict[int, tuple[str, ...]] = {}
    shows_flags = renderer.shows_flags
    session_uids = sel.uids
    total = len(session_uids)
    floor = changed_since or 0
    found = 0
    j = 0
    async for cols in _scan_pieces(s, user, sel, uids, with_sizes_dates=with_sizes_dates):
        for fid, names in cols.flag_sets.items():
            flags[fid] = flag_list_bytes(names)
            names_of[fid] = names
            if shows_flags:  # * FLAGS before any FETCH shows a keyword new to this session
                for line in sel.announce_keywords(names):
                    s.emit(line)
        lines: list[bytes] = []
        sizes_dates = with_sizes_dates
        n = len(cols.uids)
        start = bisect.bisect_left(session_uids, cols.uids[0], j) if n else j
        recent = sel.recent
        if (
            renderer.only_uid_flags
            and not floor
            and n
            and (not recent or recent.isdisjoint(cols.uids))
            and session_uids[start : start + n] == _u32(cols.uids)
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


async def _scan_pieces(
    s: Session, user: str, sel: SelectedMailbox, uids: Sequence[int], *, with_sizes_dates: bool
) -> AsyncIterator[IndexColumns]:
    """The index columns of `uids`, read in pieces that grow from a small first one.

    The client is the slow side of a large FETCH (imaplib parses ~50,000 lines in ~160 ms;
    reading and rendering them here takes ~15 ms): what it waits for is the first bytes.
    One read of the whole range made it wait for all of it to be read and a first chunk of
    4,096 lines rendered (2.3 ms at 10,000 messages, ~5 ms at 50,000; Dovecot's first bytes
    came after 0.7 ms). A first piece of FIRST_PIECE messages leaves at once; each next one
    is read while the client parses what went before, and stays under MAX_PIECE so its read
    never outlasts what the socket buffer still holds for the client. Each piece is its own
    read: a change committed in between shows in the later pieces, as it would in a FETCH
    sent a moment later (no message is in two pieces, none is skipped). Up to ONE_READ_UPTO
    messages are one read: their first bytes are as early, and an imapd that reads over
    gRPC would pay a call per piece."""
    at, size = 0, FIRST_PIECE if len(uids) > ONE_READ_UPTO else len(uids)
    while True:
        piece = uids[at : at + size] if at or len(uids) > size else uids
        query = IndexQuery(sel.span(piece), with_sizes_dates=with_sizes_dates)
        async for cols in s.ctx.store.scan_index(user, sel.mailbox_id, query):
            yield cols
        at += len(piece)
        if at >= len(uids):
            return
        size = min(size * PIECE_GROWTH, MAX_PIECE)


def _u32(values: Sequence[int]) -> array.array[int]:
    """`values` as an array like the session's map (compared in one memcmp)."""
    return values if isinstance(values, array.array) and values.typecode == "I" else array.array("I", values)


async def search_uids(
    s: Session, user: str, sel: SelectedMailbox, key: SearchKey, *, plan: IndexPlan, context: SearchContext
) -> list[tuple[int, int, int]]:
    """(seq, uid, modseq) of the matching messages, ascending; modseq is 0 unless the key
    has a MODSEQ key (nothing else reads it)."""
    with_flags, without_flags = flag_filter(key)
    query = IndexQuery(
        sel.span(sel.uids),
        with_sizes_dates=plan.needs_sizes_dates,
        header_queries=plan.header_queries,
        text_queries=plan.text_queries,
        with_flags=with_flags,
        without_flags=without_flags,
        with_modseqs=plan.needs_modseqs,
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
    gone = sel.pending_expunged
    ordered: Sequence[int]
    if _decided_by_flag_sets(key, flag_sets):
        # Only flag tests, and every flag set among the rows passes them (the store used the
        # filter): the rows are the answer, already in order. SEARCH SEEN of 49,500 messages.
        ordered = [u for u in uids if u not in gone] if gone else uids
    else:
        matched = table.evaluate(key, plan, context, sel.uids)
        matched -= gone
        ordered = sorted(matched)
    # MODSEQs only when the program has a MODSEQ key (then the answer reports the highest).
    modseq_of = dict(zip(uids, modseqs, strict=True)) if ordered and plan.needs_modseqs else {}
    return _numbered(sel, ordered, modseq_of)


def _decided_by_flag_sets(key: SearchKey, flag_sets: dict[int, tuple[str, ...]]) -> bool:
    """Whether `key` is flag tests only (one, or an AND of them) that every flag set passes."""
    parts = key.keys if isinstance(key, AndKey) else (key,)
    if not all(isinstance(part, FlagKey) for part in parts):
        return False
    tests = [(p.flag.lower(), p.present) for p in parts if isinstance(p, FlagKey)]
    for flags in flag_sets.values():
        held = {f.lower() for f in flags}
        if any((flag in held) != present for flag, present in tests):
            return False
    return True


def _numbered(sel: SelectedMailbox, uids: Sequence[int], modseq_of: dict[int, int]) -> list[tuple[int, int, int]]:
    """(seq, uid, modseq) of the ascending `uids` that are in the session's map."""
    session = sel.uids
    if not uids or not session:
        return []
    if len(uids) * 16 < len(session):  # a few: a search each
        found = ((sel.seq_of(uid), uid) for uid in uids)
        return [(seq, uid, modseq_of.get(uid, 0)) for seq, uid in found if seq]
    first = session[0]
    if session[-1] - first + 1 == len(session):  # no gap in the map: seq follows from the UID
        last, before = session[-1], first - 1
        if not modseq_of:
            return [(uid - before, uid, 0) for uid in uids if first <= uid <= last]
        return [(uid - before, uid, modseq_of.get(uid, 0)) for uid in uids if first <= uid <= last]
    # Many in a map with gaps: number them from one dict built in C (a seq_of call per
    # match was most of a SEARCH's cost, issue 13).
    seq_of = dict(zip(session, range(1, len(session) + 1), strict=True))
    out = [(seq_of[uid], uid, modseq_of.get(uid, 0)) for uid in uids if uid in seq_of]
    return out
