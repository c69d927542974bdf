"""CONTEXT=SEARCH / CONTEXT=SORT (RFC 5267): bringing updating contexts up to
date as the mailbox changes, and CANCELUPDATE (SEARCH/SORT open them).

Which messages a context matches after a change is asked of the store for
the touched messages only (new or re-flagged: the program AND their UIDs), so
an update costs one search of a few messages, not of the mailbox. The diff
and its wire form are update_contexts'.
"""

from __future__ import annotations

from typing import Final

from imapd.errors import StoreError
from imapd.message.search_eval import SearchContext, SearchEvaluator
from imapd.protocol import commands as c
from imapd.protocol.search_spec import (
    AllKey,
    AndKey,
    FlagKey,
    ModSeqKey,
    NotKey,
    OrKey,
    SearchProgram,
    SequenceKey,
    walk,
)
from imapd.protocol.sequence import SequenceSet
from imapd.session import update_contexts
from imapd.session.message_commands import matching_messages
from imapd.session.selected import SelectedMailbox
from imapd.session.session import Outcome, Session
from imapd.session.sort_commands import sorted_uids
from imapd.session.update_contexts import UpdateContext
from mailparse.view import MessageView


async def refresh(s: Session) -> None:
    """ADDTO/REMOVEFROM for the messages touched since the contexts were last brought up to date."""
    sel = s.selected
    if sel is None:
        return
    if not sel.contexts:
        sel.touched.clear()
        return
    touched = sorted(u for u in sel.touched if sel.seq_of(u) and u not in sel.pending_expunged)
    if not touched:
        sel.touched.clear()
        return
    try:
        await _bring_up_to_date(s, touched)
    except StoreError:
        # The store did not answer: the touched messages stay for the next try rather than a
        # wrong update (the command itself is answered). So do they when DONE cancels an IDLE's
        # update midway: contexts already brought up to date then simply find nothing new.
        return
    sel.touched.difference_update(touched)
    for uid in touched:
        sel.touched_meta.pop(uid, None)
    if not sel.touched:
        sel.touched_meta.clear()


async def _bring_up_to_date(s: Session, touched: list[int]) -> None:
    sel = s.selected
    assert sel is not None
    only_touched = SequenceKey(SequenceSet.from_numbers(touched), uid=True)
    for ctx in list(sel.contexts):
        matching = _matching_from_flags(sel, ctx.program, touched)
        if matching is None:
            program = SearchProgram(AndKey((only_touched, ctx.program.key)), ctx.program.charset)
            matching = {uid for _, uid, _ in await matching_messages(s, program)}
        if ctx not in sel.contexts:
            continue  # cancelled meanwhile (cannot happen within one command, but be exact)
        removed = update_contexts.remove(ctx, {u for u in touched if u not in matching})
        members = set(ctx.result)
        fresh = [u for u in touched if u in matching and u not in members]
        added: update_contexts.Pairs = []
        if fresh:
            added = update_contexts.add(ctx, await _in_result_order(s, ctx, [*ctx.result, *fresh]))
        line = update_contexts.update_line(ctx, removed, added, sel.seq_of)
        if line:
            s.emit(line)


_FLAG_ONLY: Final = (AllKey, FlagKey, SequenceKey, ModSeqKey, NotKey, OrKey, AndKey)


def _matching_from_flags(sel: SelectedMailbox, program: SearchProgram, touched: list[int]) -> set[int] | None:
    """Which touched messages match, decided from the flags the change feed (or our own STORE) just
    reported, without a store call: possible for programs on flags, numbers and MODSEQ only (UNSEEN,
    FLAGGED, DELETED, KEYWORD ...: what clients keep contexts on). None when a store search is needed."""
    metas = sel.touched_meta
    if not all(isinstance(node, _FLAG_ONLY) for node in walk(program.key)) or any(u not in metas for u in touched):
        return None
    context = SearchContext(len(sel.uids), sel.uids[-1] if sel.uids else 0, frozenset(sel.saved_search))
    evaluator = SearchEvaluator(program.key, context)
    found: set[int] = set()
    for uid in touched:
        meta = metas[uid]
        view = MessageView(
            uid=uid,
            modseq=meta.modseq,
            flags=meta.flags,
            internal_date=0,
            tz_offset_minutes=0,
            size=0,
            recent=uid in sel.recent,
        )
        if evaluator.matches(view, sel.seq_of(uid)):
            found.add(uid)
    return found


async def _in_result_order(s: Session, ctx: UpdateContext, uids: list[int]) -> list[int]:
    if ctx.criteria is None:
        return sorted(uids)
    ordered = await sorted_uids(s, uids, ctx.criteria)
    # A message whose header the store no longer had (expunged meanwhile) stays listed, last,
    # so that its coming REMOVEFROM finds it; update_contexts.add needs a superset.
    known = set(ordered)
    return ordered + [u for u in uids if u not in known]


async def cancel_update(s: Session, tag: str, cmd: c.CancelUpdate) -> Outcome:
    sel = s.selected
    assert sel is not None
    live = {ctx.tag for ctx in sel.contexts}
    unknown = [t for t in cmd.tags if t not in live]
    if unknown:
        s.tagged(tag, b"NO", b"Unknown update context tag")  # as Dovecot; nothing is cancelled
        return Outcome.CONTINUE
    cancelled = set(cmd.tags)
    sel.contexts = [ctx for ctx in sel.contexts if ctx.tag not in cancelled]
    s.tagged(tag, b"OK", b"Updates cancelled")
    return Outcome.CONTINUE
