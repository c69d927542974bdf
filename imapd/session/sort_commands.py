"""SORT / UID SORT (RFC 5256, SORT=DISPLAY RFC 5957, ESORT RFC 5267) and
THREAD / UID THREAD (ORDEREDSUBJECT, REFERENCES, REFS) on the selected mailbox.

The messages are chosen by the SEARCH program (`matching_messages`, one
store call; none for plain ALL), their SortKeys come from the process-wide
cache, else from the keys the store computed at append (one index scan,
store/message_facts.py), else (messages stored before the store kept them)
from one header fetch. Ordering and threading are the pure
`mailparse.sort_keys.sort_keyed` / `message.threads.thread_columns`, fed
columns (numbers and keys side by side): no tuple or object per message
outlives the command.

Over more than twice the messages the cache can hold (`SortKeyCache.worth_keeping`),
nothing is cached (it would only evict); over more than it holds, a SORT by ARRIVAL,
SIZE and DATE alone builds no SortKeys at all: it sorts the index's size and date columns and the sent dates
read from the stored keys (`sort_keys.stored_sent`), issue 17's million-message SORT; and a
THREAD reads only its own fields of the stored keys (`sort_keys.thread_fields`), caching nothing.
"""

from __future__ import annotations

from array import array
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import Final, NamedTuple, cast

import trio

from imapd.message.thread_input import ThreadInput, ThreadInputBuilder
from imapd.message.threads import ThreadColumns, thread_columns
from imapd.protocol import commands as c
from imapd.protocol.search_spec import AllKey, SearchProgram
from imapd.session import search_results, update_contexts
from imapd.session.cpu_slice import CpuSlice
from imapd.session.message_commands import _implicit_condstore, matching_messages
from imapd.session.session import Outcome, Session
from imapd.session.update_contexts import UpdateContext
from imapd.store_client import FetchRequest, IndexQuery
from mailparse.sort_keys import (
    SortKeys,
    ThreadFields,
    sort_columns,
    sort_int_column,
    sort_keyed,
    stored_sent,
    thread_fields,
)
from mailparse.sort_spec import SortCriterion
from store.uidset import format_uids

# From this many messages on, sorting/threading runs in a worker thread: it still holds the GIL,
# but the interpreter switches every 5 ms, so other sessions' commands go on meanwhile.
_IN_THREAD_FROM: Final = 2000
_NUMERIC: Final = frozenset({SortCriterion.ARRIVAL, SortCriterion.SIZE, SortCriterion.DATE})
_UNREAD: Final = ThreadFields(0, "", False, None, ())  # a place held until the header is read


class _Matched(NamedTuple):
    """The messages a SEARCH program matched, as columns in sequence order (no tuple per message;
    for ALL a range and a copy of the session's UID array, no int object per message: at a
    million, lists of both were 72 MB more at the peak of every SORT and THREAD)."""

    seqs: Sequence[int]
    uids: Sequence[int]
    top_modseq: int


async def _selected(s: Session, program: SearchProgram) -> _Matched:
    """The messages the program matches; ALL is answered from the session's own UID list."""
    sel = s.selected
    assert sel is not None
    if isinstance(program.key, AllKey):
        gone = sel.pending_expunged
        if not gone:
            return _Matched(range(1, len(sel.uids) + 1), array("I", sel.uids), 0)
        kept = [(seq, uid) for seq, uid in enumerate(sel.uids, 1) if uid not in gone]
        return _Matched([seq for seq, _ in kept], [uid for _, uid in kept], 0)
    matched = await matching_messages(s, program)
    return _Matched([m[0] for m in matched], [m[1] for m in matched], max((m[2] for m in matched), default=0))


async def _keys(s: Session, uids: Sequence[int], *, addresses: bool = True) -> list[SortKeys | None]:
    """The SortKeys of each of `uids` (None for one no longer in the store), cached across
    sessions unless the mailbox is far larger than the cache; `addresses=False` (THREAD):
    uncached keys may leave the address fields empty."""
    user, sel = s.user, s.selected
    assert user is not None and sel is not None
    cache = s.ctx.sort_keys
    keep = cache.worth_keeping(len(uids))
    found: list[SortKeys | None] = (
        cache.get_each(user, sel.mailbox_id, sel.uidvalidity, uids) if keep else [None] * len(uids)
    )
    if None not in found:
        return found
    position = {uid: i for i, (uid, keys) in enumerate(zip(uids, found, strict=True)) if keys is None}
    missing = await _stored_keys(s, position, found, keep=keep, addresses=keep or addresses)
    if missing:
        request = FetchRequest(format_uids(missing), with_header=True)
        cpu = CpuSlice()
        async for item in s.ctx.store.fetch(user, sel.mailbox_id, request):
            await cpu.tick()
            meta = item.meta
            if meta.header is None or meta.uid not in position:
                continue
            keys = SortKeys.from_header(meta.header, internal_date=meta.internal_date, size=meta.size)
            if keep:
                cache.put((user, sel.mailbox_id, sel.uidvalidity, meta.uid), keys)
            found[position[meta.uid]] = keys
    return found


async def _stored_keys(
    s: Session, position: dict[int, int], found: list[SortKeys | None], *, keep: bool, addresses: bool
) -> list[int]:
    """Fill `found[position[uid]]` with the keys the store keeps for the UIDs of `position` (and
    the cache, if `keep`); return the UIDs it has none for."""
    user, sel = s.user, s.selected
    assert user is not None and sel is not None
    cache = s.ctx.sort_keys
    lacking: list[int] = []
    query = IndexQuery(format_uids(sorted(position)), with_sizes_dates=True, with_sort_keys=True)
    from_stored = SortKeys.from_stored
    cpu = CpuSlice()
    async for cols in s.ctx.store.scan_index(user, sel.mailbox_id, query):
        for uid, size, date, raw in zip(cols.uids, cols.sizes, cols.dates, cols.sort_keys, strict=True):
            if cpu.due():
                await cpu.tick()
            keys = from_stored(raw, internal_date=date, size=size, addresses=addresses) if raw else None
            if keys is None:
                lacking.append(uid)
                continue
            if keep:
                cache.put((user, sel.mailbox_id, sel.uidvalidity, uid), keys)
            if uid in position:
                found[position[uid]] = keys
    return lacking


async def _numbered_keys(
    s: Session, matched: _Matched, uid: bool, *, addresses: bool = True
) -> tuple[Sequence[int], list[SortKeys]]:
    """The numbers (UIDs or sequence numbers, ascending) of the matched messages still in the
    store, and their keys."""
    found = await _keys(s, matched.uids, addresses=addresses)
    numbers = matched.uids if uid else matched.seqs
    if None in found:
        kept = [i for i, keys in enumerate(found) if keys is not None]
        return [numbers[i] for i in kept], [keys for keys in found if keys is not None]
    return numbers, cast("list[SortKeys]", found)


async def _ordered(
    numbers: Sequence[int], keys: list[SortKeys], criteria: list[tuple[SortCriterion, bool]]
) -> list[int]:
    if len(numbers) >= _IN_THREAD_FROM:
        return await trio.to_thread.run_sync(sort_keyed, numbers, keys, criteria)
    return sort_keyed(numbers, keys, criteria)


async def _header_keys(s: Session, unread: dict[int, int]) -> AsyncIterator[tuple[int, SortKeys]]:
    """For the messages of `unread` (uid -> index) that have no stored keys: (index, keys read from
    the header) for each the store still has, each taken out of `unread`, so what is left in it
    afterwards was expunged meanwhile."""
    user, sel = s.user, s.selected
    assert user is not None and sel is not None
    if not unread:
        return
    request = FetchRequest(format_uids(sorted(unread)), with_header=True)
    async for item in s.ctx.store.fetch(user, sel.mailbox_id, request):
        meta = item.meta
        i = unread.pop(meta.uid, None) if meta.header is not None else None
        if i is not None:
            assert meta.header is not None
            yield i, SortKeys.from_header(meta.header, internal_date=meta.internal_date, size=meta.size)


async def _numeric_columns(
    s: Session, uids: Sequence[int], want_sent: bool
) -> tuple[array[int], dict[SortCriterion, array[int]]]:
    """The UIDs of `uids` still in the store (ascending) and their ARRIVAL, SIZE and (DATE) sent
    values: the index's columns and the sent date inside the keys the store keeps, decoding no
    strings and building no SortKeys, in typed arrays (no int object per message and column:
    at a million those were most of the peak, issue 17). A message without stored keys is
    dated from its header."""
    user, sel = s.user, s.selected
    assert user is not None and sel is not None
    present: array[int] = array("q")
    arrivals: array[int] = array("q")
    sizes: array[int] = array("q")
    sents: array[int] = array("q")
    unread: dict[int, int] = {}  # uid -> its index, for a message without stored keys
    query = IndexQuery(format_uids(uids), with_sizes_dates=True, with_sort_keys=want_sent)
    async for cols in s.ctx.store.scan_index(user, sel.mailbox_id, query):
        if want_sent:
            chunk = list(map(stored_sent, cols.sort_keys, cols.dates))
            if None in chunk:
                for uid, sent in zip(cols.uids, chunk, strict=True):
                    if sent is None:
                        unread[uid] = len(sents)
                    sents.append(0 if sent is None else sent)
            else:
                sents.extend(cast("list[int]", chunk))
        # (iter: the store client may hand arrays of another kind, which extend refuses)
        present.extend(iter(cols.uids))
        arrivals.extend(iter(cols.dates))
        sizes.extend(iter(cols.sizes))
        await trio.lowlevel.checkpoint()
    if unread:
        async for i, keys in _header_keys(s, unread):
            sents[i] = keys.sent
        if unread:  # expunged meanwhile: left out, as `_keys` leaves them out
            gone = set(unread.values())
            kept = [i for i in range(len(present)) if i not in gone]
            columns = (array("q", [column[i] for i in kept]) for column in (present, arrivals, sizes, sents))
            present, arrivals, sizes, sents = columns
    by_criterion = {SortCriterion.ARRIVAL: arrivals, SortCriterion.SIZE: sizes}
    if want_sent:
        by_criterion[SortCriterion.DATE] = sents
    return present, by_criterion


async def _sorted_numbers(
    s: Session, program: SearchProgram, uid: bool, criteria: list[tuple[SortCriterion, bool]]
) -> tuple[list[int], int]:
    """The matching messages' numbers (UIDs or sequence numbers) in sort order, and their top modseq.

    A SORT by ARRIVAL, SIZE and DATE only, over more messages than the key cache holds, sorts
    the index's columns: a million SortKeys (~0.8 KiB each) cost seconds to build and most of
    a gigabyte of short-lived objects, and the cache could not have kept them anyway."""
    matched = await _selected(s, program)
    numeric = all(criterion in _NUMERIC for criterion, _ in criteria)
    if not numeric or s.ctx.sort_keys.fits(len(matched.uids)):
        return await _ordered(*await _numbered_keys(s, matched, uid), criteria), matched.top_modseq
    want_sent = any(criterion is SortCriterion.DATE for criterion, _ in criteria)
    present, columns = await _numeric_columns(s, matched.uids, want_sent)
    numbers: Sequence[int]
    if uid:
        numbers = present
    elif len(present) == len(matched.uids):
        numbers = matched.seqs
    else:
        seq_of = dict(zip(matched.uids, matched.seqs, strict=True))
        numbers = [seq_of[u] for u in present]
    if len(criteria) == 1:
        criterion, reverse = criteria[0]
        ordered = await trio.to_thread.run_sync(partial(sort_int_column, numbers, columns[criterion], reverse=reverse))
    else:
        ordered = await trio.to_thread.run_sync(sort_columns, numbers, columns, criteria)
    return ordered, matched.top_modseq


async def sorted_uids(s: Session, uids: list[int], criteria: tuple[tuple[SortCriterion, bool], ...]) -> list[int]:
    """`uids` in sort order (UIDs order like sequence numbers, so they break ties the same way)."""
    ascending = sorted(uids)
    numbers, keys = await _numbered_keys(s, _Matched(ascending, ascending, 0), uid=True)
    return await _ordered(numbers, keys, list(criteria))


async def sort(s: Session, tag: str, cmd: c.Sort) -> Outcome:
    sel = s.selected
    assert sel is not None
    updating = cmd.returns is not None and c.SearchReturn.UPDATE in cmd.returns
    if updating and update_contexts.tag_in_use(sel.contexts, tag):
        s.tagged(tag, b"BAD", b"Tag reuse: an update context has this tag")  # RFC 5267 4.3
        return Outcome.CONTINUE
    if cmd.program.uses_modseq:
        _implicit_condstore(s, sel)
    try:
        numbers, top_modseq = await _sorted_numbers(s, cmd.program, cmd.uid, list(cmd.criteria))
    except Exception:
        if search_results.saving(cmd.returns):
            sel.saved_search = ()  # a SAVE answered NO leaves "$" empty (RFC 5182 2.1)
        raise
    modseq = top_modseq if cmd.program.uses_modseq and numbers else 0
    if cmd.returns is None:
        # One buffer, not a bytes piece per message (a million of them at once, issue 17).
        line = bytearray(b"* SORT")
        for n in numbers:
            line += b" %d" % n
        if modseq:
            line += b" (MODSEQ %d)" % modseq
        line += b"\r\n"
        s.emit(bytes(line))
    else:
        in_sort_order = numbers if cmd.uid else [sel.uids[n - 1] for n in numbers]
        if c.SearchReturn.SAVE in cmd.returns:
            # SEARCHRES: a set of messages; MIN/MAX alone keep the first/last in sort order.
            sel.saved_search = search_results.saved_result(cmd.returns, in_sort_order)
        if cmd.returns - {c.SearchReturn.SAVE}:
            s.emit(
                search_results.esearch_line(
                    tag,
                    uid=cmd.uid,
                    returns=cmd.returns,
                    numbers=numbers,
                    modseq=modseq,
                    partial=cmd.partial,
                    sort_order=True,
                )
            )
        if updating:
            context = UpdateContext(tag, cmd.uid, cmd.program, cmd.criteria, in_sort_order)
            refusal = update_contexts.open_context(sel.contexts, context)
            if refusal:
                s.emit(refusal)
    s.tagged(tag, b"OK", b"SORT completed")
    return Outcome.CONTINUE


async def _thread_input(s: Session, matched: _Matched, uid: bool) -> ThreadInput:
    """THREAD's fields of the matched messages still in the store, from the keys the store keeps
    (the subject alone decoded, no SortKeys, nothing cached); a message without stored keys is
    read from its header. For more messages than the key cache holds: 200,000 SortKeys with
    their address strings were a ~250 MB peak that jemalloc's metadata outlived. The fields go
    straight into typed arrays, Message-IDs and subjects interned (`thread_input`): no int,
    bytes or tuple object kept per message (issue 17)."""
    user, sel = s.user, s.selected
    assert user is not None and sel is not None
    builder = ThreadInputBuilder()
    unread: dict[int, int] = {}  # uid -> its index in the columns, for a message without stored keys
    query = IndexQuery(format_uids(matched.uids), with_sizes_dates=True, with_sort_keys=True)
    async for cols in s.ctx.store.scan_index(user, sel.mailbox_id, query):
        found = list(map(thread_fields, cols.sort_keys, cols.dates))
        if None in found:
            for j, fields in enumerate(found):
                if fields is None:
                    unread[cols.uids[j]] = len(builder) + j
                    found[j] = _UNREAD
        if found:
            sents, subjects, replies, message_ids, parent_ids = zip(*cast("list[ThreadFields]", found), strict=True)
            builder.add_columns(ThreadColumns(cols.uids, sents, subjects, replies, message_ids, parent_ids))
        await trio.lowlevel.checkpoint()
    async for i, keys in _header_keys(s, unread):
        builder.replace(i, ThreadFields(keys.sent, keys.subject, keys.subject_reply, keys.message_id, keys.parent_ids))
    if unread:  # expunged meanwhile: left out, as `_keys` leaves them out
        gone = set(unread.values())
        builder.keep([i for i in range(len(builder)) if i not in gone])
    if not uid:
        if len(builder) == len(matched.uids):
            builder.renumber(matched.seqs)
        else:
            seq_of = dict(zip(matched.uids, matched.seqs, strict=True))
            builder.renumber([seq_of[u] for u in builder.numbers])
    return builder.build()


async def thread_(s: Session, tag: str, cmd: c.Thread) -> Outcome:
    sel = s.selected
    assert sel is not None
    if cmd.program.uses_modseq:
        _implicit_condstore(s, sel)
    matched = await _selected(s, cmd.program)
    columns: ThreadColumns | ThreadInput
    if s.ctx.sort_keys.fits(len(matched.uids)):
        numbers, keys = await _numbered_keys(s, matched, cmd.uid, addresses=False)
        columns = ThreadColumns.of(numbers, keys)
    else:
        columns = await _thread_input(s, matched, cmd.uid)
    if len(columns.numbers) >= _IN_THREAD_FROM:
        rendered = await trio.to_thread.run_sync(thread_columns, cmd.algorithm, columns)
    else:
        rendered = thread_columns(cmd.algorithm, columns)
    s.emit(b"* THREAD " + rendered + b"\r\n" if rendered else b"* THREAD\r\n")
    s.tagged(tag, b"OK", b"THREAD completed")
    return Outcome.CONTINUE
