"""Commands on the messages of the selected mailbox (RFC 3501 6.4, UIDPLUS,
MOVE, CONDSTORE/QRESYNC, ESEARCH). Each is one store call (FETCH that sets
\\Seen: two), whatever the number of messages.
"""

from __future__ import annotations

from dataclasses import replace

from imapd.message import index_search
from imapd.message.fetch_render import FetchPlan, fetch_response, render_values
from imapd.message.search_eval import SearchContext, SearchEvaluator
from imapd.protocol import commands as c
from imapd.protocol.fetch_spec import (
    ENVELOPE,
    FLAGS,
    MODSEQ,
    FetchAttribute,
    with_modseq,
    with_uid,
)
from imapd.protocol.search_spec import SearchProgram
from imapd.protocol.sequence import SequenceSet
from imapd.protocol.values import Raw, Value, encode
from imapd.session import index_queries, search_results, update_contexts
from imapd.session.cpu_slice import CpuSlice
from imapd.session.keyword_limits import keyword_refusal
from imapd.session.list_match import canonical
from imapd.session.selected import SelectedMailbox
from imapd.session.session import Outcome, Session
from imapd.session.update_contexts import UpdateContext
from imapd.store_client import FetchedMessage, FetchRequest, FlagMode
from mailparse.errors import MissingMessageData, UnknownTransferEncoding
from mailparse.view import MessageView
from store.uidset import format_uids

_MODES = {c.StoreMode.REPLACE: FlagMode.REPLACE, c.StoreMode.ADD: FlagMode.ADD, c.StoreMode.REMOVE: FlagMode.REMOVE}


def _sel(s: Session) -> tuple[str, SelectedMailbox]:
    assert s.user is not None and s.selected is not None
    return s.user, s.selected


def _view(item: FetchedMessage, recent: bool = False) -> MessageView:
    m = item.meta
    facts = m.facts
    # Positional, in MessageView's field order: one is made per message of every FETCH and
    # SEARCH, and keywords cost more than half of the tuple's construction.
    return MessageView(
        m.uid,
        m.modseq,
        m.flags,
        m.internal_date,
        m.tz_offset_minutes,
        m.size,
        m.header,
        item.body,
        recent,
        facts.save_date if facts is not None else None,
        facts.body_id if facts is not None else None,
        facts.preview if facts is not None else None,
    )


def _bad_sequence(s: Session, tag: str, sel: SelectedMailbox, seqs: SequenceSet, uid: bool) -> bool:
    if not uid and sel.seq_out_of_range(seqs):
        s.tagged(tag, b"BAD", b"Invalid message sequence number")
        s.bad_commands += 1
        return True
    return False


def _read_only(s: Session, tag: str, sel: SelectedMailbox) -> bool:
    if sel.read_only:
        s.tagged(tag, b"NO", b"[READ-ONLY] Mailbox is read-only")
        return True
    return False


def _implicit_condstore(s: Session, sel: SelectedMailbox) -> None:
    """FETCH MODSEQ / CHANGEDSINCE, SEARCH MODSEQ, STORE UNCHANGEDSINCE enable CONDSTORE (RFC 7162 3.1)."""
    if "CONDSTORE" not in s.enabled:
        s.enabled.add("CONDSTORE")
        s.emit(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % sel.modseq)
    sel.condstore = True


# ---- FETCH ------------------------------------------------------------------------------
async def fetch(s: Session, tag: str, cmd: c.Fetch) -> Outcome:
    user, sel = _sel(s)
    if _bad_sequence(s, tag, sel, cmd.sequence_set, cmd.uid):
        return Outcome.CONTINUE
    plan = _plan(s, sel, cmd)
    attrs = plan.attributes
    uids = sel.uids_for(cmd.sequence_set, uid=cmd.uid)
    if cmd.vanished and cmd.changed_since is not None and cmd.uid:
        if "QRESYNC" not in s.enabled:
            s.tagged(tag, b"BAD", b"VANISHED needs QRESYNC enabled")
            return Outcome.CONTINUE
        gone = await s.ctx.store.vanished(user, sel.mailbox_id, cmd.changed_since, str(cmd.sequence_set))
        if gone:
            s.emit(b"* VANISHED (EARLIER) " + format_uids(gone).encode() + b"\r\n")
    if not uids:
        s.tagged(tag, b"OK", b"FETCH completed")
        return Outcome.CONTINUE
    if plan.from_index:  # flags and metadata only: from the flag index, streamed
        found = await index_queries.fetch_lines(s, user, sel, attrs=attrs, uids=uids, changed_since=cmd.changed_since)
        if found < len(uids) and cmd.changed_since is None:
            s.tagged(tag, b"NO", b"[EXPUNGEISSUED] Some of the requested messages no longer exist")
        else:
            s.tagged(tag, b"OK", b"FETCH completed")
        return Outcome.CONTINUE
    uid_text = sel.span(uids)
    flagged: set[int] = set()
    if plan.sets_seen and not sel.read_only:
        result = await s.ctx.store.store_flags(user, sel.mailbox_id, uid_text, FlagMode.ADD, ["\\Seen"])
        sel.note_own_flags(result.updated)
        if not plan.wants_flags:
            flagged = {m.uid for m in result.updated}
    # ENVELOPEs come from the cache when it has them all: then no header bytes are needed.
    wants_envelope = plan.wants_envelope
    cached = wants_envelope and s.ctx.envelopes.has_all(user, sel.mailbox_id, uids)
    needs = plan.needs_without_envelope if cached else plan.needs
    request = FetchRequest(uid_text, needs.header, needs.body, cmd.changed_since or 0, with_facts=needs.facts)
    missing = set(uids)
    cpu = CpuSlice()
    wants_flags = plan.wants_flags
    flagged_plan: FetchPlan | None = None
    recent = sel.recent
    seq_of = sel.seq_of
    async for item in s.ctx.store.fetch(user, sel.mailbox_id, request):
        if cpu.due():
            await cpu.tick()
        meta = item.meta
        seq = seq_of(meta.uid)
        if not seq:
            continue
        missing.discard(meta.uid)
        these, these_flags = plan, wants_flags
        if flagged and meta.uid in flagged:
            if flagged_plan is None:
                flagged_plan = FetchPlan(with_modseq((*attrs, FLAGS)) if sel.condstore else (*attrs, FLAGS))
            these, these_flags = flagged_plan, True
        try:
            if wants_envelope:
                values = _render_with_envelope(
                    s, user, sel.mailbox_id, these.attributes, item, recent=meta.uid in recent
                )
                parts = fetch_response(seq, these.labels, values)
            else:
                parts = these.response(seq, _view(item, meta.uid in recent))
        except MissingMessageData:
            continue
        except UnknownTransferEncoding:
            s.tagged(tag, b"NO", b"[UNKNOWN-CTE] Cannot decode the part's Content-Transfer-Encoding")  # RFC 3516
            return Outcome.CONTINUE
        if these_flags:
            for line in sel.announce_keywords(meta.flags):
                s.emit(line)
        if s.emit_parts(parts):
            await s.flush()
    if missing and cmd.changed_since is None:
        # Expunged by another session, not yet announced to this one (RFC 2180 4.1.2).
        s.tagged(tag, b"NO", b"[EXPUNGEISSUED] Some of the requested messages no longer exist")
    else:
        s.tagged(tag, b"OK", b"FETCH completed")
    return Outcome.CONTINUE


def _plan(s: Session, sel: SelectedMailbox, cmd: c.Fetch) -> FetchPlan:
    """The attributes `cmd` answers with and how: the session's last plan when the client
    repeats its FETCH (the parser hands back the same command object) and CONDSTORE is as
    it was then, else worked out now (enabling CONDSTORE first when the FETCH asks for it).

    Nothing else in the mailbox counts: a plan made after enabling CONDSTORE implicitly is
    kept with condstore on, and `s.enabled` never loses CONDSTORE, so the step it skips on a
    repeat would do nothing."""
    last = s.fetch_plan
    if last is not None and last[0] is cmd and last[1] == sel.condstore:
        return last[2]
    attrs = with_uid(cmd.attributes) if cmd.uid else cmd.attributes
    if cmd.changed_since is not None or MODSEQ in attrs:
        _implicit_condstore(s, sel)
    if sel.condstore and (cmd.changed_since is not None or FLAGS in attrs):
        attrs = with_modseq(attrs)  # RFC 7162 3.1: MODSEQ with every FETCH of flags once enabled
    plan = FetchPlan(attrs)
    s.fetch_plan = (cmd, sel.condstore, plan)
    return plan


def _render_with_envelope(
    s: Session,
    user: str,
    mailbox_id: int,
    attrs: tuple[FetchAttribute, ...],
    item: FetchedMessage,
    *,
    recent: bool,
) -> list[Value]:
    """The values of `attrs` (ENVELOPE among them), the ENVELOPE from the cache when it has it."""
    key = (user, mailbox_id, item.meta.uid)
    envelope = s.ctx.envelopes.get(key)
    if envelope is None:
        values = render_values(attrs, _view(item, recent))
        index = attrs.index(ENVELOPE)
        # Kept in wire form: re-encoding the nested value tree costs more than rendering FLAGS.
        envelope = Raw(encode(values[index]))
        s.ctx.envelopes.put(key, envelope)
        values[index] = envelope
        return values
    others = tuple(a for a in attrs if a != ENVELOPE)
    rendered = iter(render_values(others, _view(item, recent)))
    return [envelope if a == ENVELOPE else next(rendered) for a in attrs]


# ---- STORE ------------------------------------------------------------------------------
async def store(s: Session, tag: str, cmd: c.Store) -> Outcome:
    user, sel = _sel(s)
    if _bad_sequence(s, tag, sel, cmd.sequence_set, cmd.uid) or _read_only(s, tag, sel):
        return Outcome.CONTINUE
    if cmd.unchanged_since is not None:
        _implicit_condstore(s, sel)
    uids = sel.uids_for(cmd.sequence_set, uid=cmd.uid)
    if sel.pending_expunged:
        uids = [u for u in uids if u not in sel.pending_expunged]
    if not uids:
        s.tagged(tag, b"OK", b"STORE completed")
        return Outcome.CONTINUE
    for f in cmd.flags:
        if f.lower() == "\\recent":
            s.tagged(tag, b"BAD", b"\\Recent cannot be changed")  # RFC 3501 2.3.2; as Dovecot
            return Outcome.CONTINUE
    flags = list(cmd.flags)
    refusal = keyword_refusal(flags) if cmd.mode is not c.StoreMode.REMOVE else None
    if refusal is not None:
        s.tagged(tag, b"NO", refusal)
        return Outcome.CONTINUE
    result = await s.ctx.store.store_flags(
        user, sel.mailbox_id, sel.span(uids), _MODES[cmd.mode], flags, unchanged_since=cmd.unchanged_since
    )
    sel.note_own_flags(result.updated)
    if result.updated:
        s.committed(sel.mailbox_id, modseq=result.highestmodseq)
    for meta in result.updated:
        for line in sel.announce_keywords(meta.flags):
            s.emit(line)
    if not cmd.silent or cmd.unchanged_since is not None:
        for meta in result.updated:
            seq = sel.seq_of(meta.uid)
            if seq:
                s.emit(sel.flags_response(seq, meta, with_uid=cmd.uid))
    elif sel.condstore:
        # .SILENT still reports the new MODSEQ once CONDSTORE is on (RFC 7162 3.2).
        for meta in result.updated:
            seq = sel.seq_of(meta.uid)
            if seq:
                s.emit(b"* %d FETCH (UID %d MODSEQ (%d))\r\n" % (seq, meta.uid, meta.modseq))
    if result.modified:
        numbers = result.modified if cmd.uid else [sel.seq_of(u) for u in result.modified]
        code = b"[MODIFIED " + format_uids(n for n in numbers if n).encode() + b"] "
        s.tagged(tag, b"OK", code + b"Conditional STORE failed for some messages")
    else:
        s.tagged(tag, b"OK", b"STORE completed")
    return Outcome.CONTINUE


# ---- COPY / MOVE / EXPUNGE --------------------------------------------------------------
async def copy(s: Session, tag: str, cmd: c.Copy | c.Move) -> Outcome:
    user, sel = _sel(s)
    move = isinstance(cmd, c.Move)
    if _bad_sequence(s, tag, sel, cmd.sequence_set, cmd.uid) or (move and _read_only(s, tag, sel)):
        return Outcome.CONTINUE
    uids = sel.uids_for(cmd.sequence_set, uid=cmd.uid)
    name = b"MOVE" if move else b"COPY"
    if not uids:
        s.tagged(tag, b"OK", name + b" completed (no messages)")
        return Outcome.CONTINUE
    method = s.ctx.store.move if move else s.ctx.store.copy
    with s.writing_into(cmd.mailbox):
        result = await method(user, sel.mailbox_id, sel.span(uids), cmd.mailbox)
        if canonical(cmd.mailbox) == sel.name:
            sel.note_added(result.dest_uids)
            await s.claim_own_recent(result.dest_uids)
    if result.dest_uids:
        s.committed(result.dest_mailbox_id, modseq=result.dest_modseq, uid=max(result.dest_uids))
    if result.expunged:
        s.committed(sel.mailbox_id, modseq=result.source_modseq)
    code = b""
    if result.source_uids:
        code = b"[COPYUID %d %s %s] " % (
            result.dest_uidvalidity,
            format_uids(result.source_uids).encode(),
            format_uids(result.dest_uids).encode(),
        )
    if move:
        if code:
            s.emit(b"* OK " + code + b"Moved\r\n")
        for line in sel.note_own_expunge(result.expunged):
            s.emit(line)
        s.tagged(tag, b"OK", b"MOVE completed")
    else:
        s.tagged(tag, b"OK", code + b"COPY completed")
    return Outcome.CONTINUE


async def expunge(s: Session, tag: str, cmd: c.Expunge) -> Outcome:
    user, sel = _sel(s)
    if sel.read_only:
        s.tagged(tag, b"OK", b"EXPUNGE ignored in a read-only mailbox")  # as Dovecot
        return Outcome.CONTINUE
    uid_text = ""
    if cmd.uids is not None:
        uid_text = sel.span(sel.uids_for(cmd.uids, uid=True))
        if not uid_text:
            s.tagged(tag, b"OK", b"EXPUNGE completed")
            return Outcome.CONTINUE
    result = await s.ctx.store.expunge(user, sel.mailbox_id, uid_text)
    if result.expunged:
        s.committed(sel.mailbox_id, modseq=result.highestmodseq)
    lines = sel.note_own_expunge(result.expunged)
    if lines:
        s.emit(b"".join(lines))  # one buffer, not one writev piece per message
    code = b"[HIGHESTMODSEQ %d] " % result.highestmodseq if sel.condstore else b""
    s.tagged(tag, b"OK", code + b"EXPUNGE completed")
    return Outcome.CONTINUE


# ---- SEARCH -----------------------------------------------------------------------------
async def matching_messages(s: Session, program: SearchProgram) -> list[tuple[int, int, int]]:
    """(seq, uid, modseq) of the selected messages `program` matches, in sequence order.

    SEARCH, SORT and THREAD all select their messages here. The modseq is only read (and may
    be 0) when the program uses MODSEQ.
    """
    user, sel = _sel(s)
    matched: list[tuple[int, int, int]] = []  # (seq, uid, modseq)
    index_plan = index_search.plan(program.key) if sel.uids else None
    if index_plan is not None:
        context = SearchContext(len(sel.uids), sel.uids[-1], frozenset(sel.saved_search))
        matched = await index_queries.search_uids(s, user, sel, program.key, plan=index_plan, context=context)
    elif sel.uids:
        needs = program.needs
        context = SearchContext(len(sel.uids), sel.uids[-1], frozenset(sel.saved_search))
        evaluator = SearchEvaluator(program.key, context)
        request = FetchRequest(sel.span(sel.uids), needs.header, needs.body, with_facts=needs.facts)
        cpu = CpuSlice()
        async for item in s.ctx.store.fetch(user, sel.mailbox_id, request):
            await cpu.tick()
            seq = sel.seq_of(item.meta.uid)
            if seq and item.meta.uid not in sel.pending_expunged:
                try:
                    if evaluator.matches(_view(item, item.meta.uid in sel.recent), seq):
                        matched.append((seq, item.meta.uid, item.meta.modseq))
                except MissingMessageData:
                    continue
        matched.sort()
    return matched


async def search(s: Session, tag: str, cmd: c.Search) -> Outcome:
    _, sel = _sel(s)
    program = cmd.program
    updating = cmd.returns is not None and c.SearchReturn.UPDATE in cmd.returns
    if updating and update_contexts.tag_in_use(sel.contexts, tag):
        s.tagged(tag, b"BAD", b"Tag reuse: an update context has this tag")  # RFC 5267 4.3
        return Outcome.CONTINUE
    if cmd.charset_given and "UTF8=ACCEPT" in s.enabled:
        s.tagged(tag, b"BAD", b"No CHARSET once UTF8=ACCEPT is enabled: strings are UTF-8")  # RFC 6855 3
        return Outcome.CONTINUE
    if program.uses_modseq:
        _implicit_condstore(s, sel)
    if cmd.returns is None and s.rev2:
        cmd = replace(cmd, returns=frozenset({c.SearchReturn.ALL}))  # RFC 9051 6.4.4: always ESEARCH
    try:
        matched = await matching_messages(s, program)
    except Exception:
        if search_results.saving(cmd.returns):
            sel.saved_search = ()  # a SAVE answered NO leaves "$" empty (RFC 5182 2.1)
        raise
    numbers = [uid for _, uid, _ in matched] if cmd.uid else [seq for seq, _, _ in matched]
    top_modseq = max((m for _, _, m in matched), default=0) if program.uses_modseq else 0
    if cmd.returns is None:
        line = b"* SEARCH" + (b" " + " ".join(map(str, numbers)).encode("ascii") if numbers else b"")
        if program.uses_modseq and matched:
            line += b" (MODSEQ %d)" % top_modseq
        s.emit(line + b"\r\n")
    else:
        returns = cmd.returns
        if c.SearchReturn.SAVE in returns:
            sel.saved_search = search_results.saved_result(returns, [uid for _, uid, _ in matched])
        if returns - {c.SearchReturn.SAVE}:
            s.emit(
                search_results.esearch_line(
                    tag,
                    uid=cmd.uid,
                    returns=returns,
                    numbers=numbers,
                    modseq=top_modseq if program.uses_modseq else 0,
                    partial=cmd.partial,
                    sort_order=False,
                )
            )
        if updating:
            context = UpdateContext(tag, cmd.uid, program, None, [uid for _, uid, _ in matched])
            refusal = update_contexts.open_context(sel.contexts, context)
            if refusal:
                s.emit(refusal)
    s.tagged(tag, b"OK", b"SEARCH completed")
    return Outcome.CONTINUE
