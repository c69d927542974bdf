"""Commands on mailboxes (RFC 3501 6.3) plus ENABLE, NAMESPACE and QUOTA."""

from __future__ import annotations

import array
import bisect
from collections.abc import Sequence

from imapd.errors import StoreError
from imapd.message import object_ids
from imapd.protocol import commands as c
from imapd.protocol import mutf7
from imapd.protocol.states import ConnectionState, Transition
from imapd.protocol.values import String, encode
from imapd.session.cpu_slice import CpuSlice
from imapd.session.error_map import Context
from imapd.session.list_match import DELIMITER, canonical, join_reference, matches
from imapd.session.selected import SelectedMailbox, flag_list
from imapd.session.session import Outcome, Session
from imapd.store_client import FetchRequest, MailboxInfo, MailboxStatus
from store.uidset import format_uids

_ENABLABLE = ("CONDSTORE", "QRESYNC", "UTF8=ACCEPT", "IMAP4rev2")


def mailbox_name(name: str, *, utf8: bool = False) -> bytes:
    """A mailbox name in a response: modified UTF-7, or UTF-8 once the client enabled UTF8=ACCEPT (RFC 6855 3)."""
    if not utf8:
        return encode(String(mutf7.encode(name)))
    raw = name.encode("utf-8")
    if any(b < 0x20 or b == 0x7F for b in raw):
        return encode(String(raw))
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'  # UTF-8 in a quoted string


def _names(s: Session) -> bool:
    """UTF-8 mailbox names in responses: UTF8=ACCEPT (RFC 6855) or IMAP4rev2 (RFC 9051 5.1) enabled."""
    return s.utf8_names


def _user(s: Session) -> str:
    assert s.user is not None
    return s.user


# ---- SELECT / EXAMINE ------------------------------------------------------------
async def select(s: Session, tag: str, cmd: c.Select) -> Outcome:
    user = _user(s)
    if cmd.qresync is not None and "QRESYNC" not in s.enabled:
        s.tagged(tag, b"BAD", b"QRESYNC must be enabled first")
        return Outcome.CONTINUE
    if s.selected is not None:
        s.leave_mailbox()
        s.transition(Transition.SELECT_FAILED)
        s.emit(b"* OK [CLOSED] Previous mailbox closed\r\n")  # RFC 7162 3.2.11; Dovecot sends it always
    if cmd.condstore:
        s.enabled.add("CONDSTORE")
    result = await s.ctx.store.select(user, cmd.mailbox)
    if result.mailbox.noselect:
        s.tagged(tag, b"NO", b"[CANNOT] Mailbox cannot be selected")
        return Outcome.CONTINUE
    status = result.mailbox.status
    assert status is not None
    # \Recent (RFC 3501 2.3.2): SELECT takes what nobody has seen yet; EXAMINE only looks, and so does
    # an IMAP4rev2 session (RFC 9051 has no \Recent: it leaves the new mail to rev1 sessions).
    rev2 = s.rev2
    claims = not cmd.read_only and not rev2
    recent_range = (result.recent_boundary, status.uidnext) if not rev2 else (0, 0)
    if claims and result.recent_boundary < status.uidnext:
        recent_range = await s.ctx.store.claim_recent(user, result.mailbox.mailbox_id, status.uidnext)
    sub = s.ctx.hub.subscribe(
        user,
        result.mailbox.mailbox_id,
        status.highestmodseq,
        last_uid=status.uidnext - 1,
        claims_recent=claims,
    )
    # The shared feed already passed changes we did not see: take a fresh snapshot.
    for _ in range(3):
        if sub.joined_after <= status.highestmodseq:
            break
        result = await s.ctx.store.select(user, cmd.mailbox)
        assert result.mailbox.status is not None
        status = result.mailbox.status
    sel = SelectedMailbox(
        name=result.mailbox.name,
        mailbox_id=result.mailbox.mailbox_id,
        uidvalidity=status.uidvalidity,
        uids=array.array("I", result.uids),
        modseq=status.highestmodseq,
        read_only=cmd.read_only,
        condstore="CONDSTORE" in s.enabled,
        qresync="QRESYNC" in s.enabled,
    )
    lo, hi = recent_range
    sel.recent = {u for u in sel.uids[bisect.bisect_left(sel.uids, lo) :] if u < hi}
    sel.recent_range = recent_range if claims else (0, 0)
    sel.no_recent = rev2
    sel.announced_recent = len(sel.recent)
    s.selected, s.subscription = sel, sub
    s.transition(Transition.SELECTED)
    sel.keywords = list(result.keywords)
    for line in sel.flags_lines():
        s.emit(line)
    s.emit(b"* %d EXISTS\r\n" % len(sel.uids))
    if rev2:
        # RFC 9051 6.3.2: a LIST response with the mailbox name; no RECENT, no [UNSEEN].
        s.emit(b'* LIST () "/" ' + mailbox_name(sel.name, utf8=True) + b"\r\n")
    else:
        s.emit(b"* %d RECENT\r\n" % len(sel.recent))
        first_unseen = sel.seq_of(result.first_unseen_uid)
        if first_unseen:
            s.emit(b"* OK [UNSEEN %d] First unseen\r\n" % first_unseen)
    s.emit(b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % status.uidvalidity)
    s.emit(b"* OK [UIDNEXT %d] Predicted next UID\r\n" % status.uidnext)
    s.emit(b"* OK [MAILBOXID (%s)] Ok\r\n" % object_ids.mailbox_id(sel.mailbox_id, status.uidvalidity).encode())
    s.emit(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % status.highestmodseq)
    if cmd.qresync is not None and cmd.qresync.uidvalidity == status.uidvalidity:
        await _qresync(s, sel, cmd.qresync)
    mode = b"[READ-ONLY]" if cmd.read_only else b"[READ-WRITE]"
    s.tagged(tag, b"OK", mode + (b" EXAMINE" if cmd.read_only else b" SELECT") + b" completed")
    return Outcome.CONTINUE


async def _qresync(s: Session, sel: SelectedMailbox, params: c.QResyncParams) -> None:
    user = _user(s)
    known = str(params.known_uids) if params.known_uids is not None else ""
    vanished = await s.ctx.store.vanished(user, sel.mailbox_id, params.modseq, known)
    if vanished:
        s.emit(b"* VANISHED (EARLIER) " + format_uids(vanished).encode() + b"\r\n")
    if sel.uids:
        request = FetchRequest(sel.span(sel.uids), changed_since=params.modseq)
        async for item in s.ctx.store.fetch(user, sel.mailbox_id, request):
            seq = sel.seq_of(item.meta.uid)
            if seq:
                s.emit(
                    b"* %d FETCH (UID %d FLAGS %s MODSEQ (%d))\r\n"
                    % (seq, item.meta.uid, flag_list(item.meta.flags), item.meta.modseq)
                )


async def close(s: Session, tag: str, cmd: c.Close | c.Unselect) -> Outcome:
    sel = s.selected
    assert sel is not None
    if isinstance(cmd, c.Close) and not sel.read_only:
        # CLOSE expunges silently (RFC 3501 6.4.2).
        try:
            result = await s.ctx.store.expunge(_user(s), sel.mailbox_id)
            if result.expunged:
                s.committed(sel.mailbox_id, modseq=result.highestmodseq)
        except StoreError as exc:
            s.leave_mailbox()
            s.transition(Transition.CLOSED)
            return s.store_failed(tag, exc, Context.GENERAL)
    s.leave_mailbox()
    s.transition(Transition.CLOSED)
    s.tagged(tag, b"OK", b"CLOSE completed" if isinstance(cmd, c.Close) else b"UNSELECT completed")
    return Outcome.CONTINUE


# ---- CREATE / DELETE / RENAME / (UN)SUBSCRIBE -----------------------------------
async def create(s: Session, tag: str, cmd: c.Create) -> Outcome:
    name = cmd.mailbox.rstrip(DELIMITER)
    if canonical(name) == "INBOX":
        s.tagged(tag, b"NO", b"[ALREADYEXISTS] INBOX always exists")
        return Outcome.CONTINUE
    special = cmd.special_use[0] if cmd.special_use else ""
    try:
        created = await s.ctx.store.create_mailbox(_user(s), name, special)
    except StoreError as exc:
        return s.store_failed(tag, exc, Context.CREATE)
    s.ctx.hub.accounts.committed(_user(s), name=created.name)
    if created.status is not None:  # RFC 8474 4.1
        mailbox_id = object_ids.mailbox_id(created.mailbox_id, created.status.uidvalidity).encode()
        s.tagged(tag, b"OK", b"[MAILBOXID (%s)] CREATE completed" % mailbox_id)
    else:
        s.tagged(tag, b"OK", b"CREATE completed")
    return Outcome.CONTINUE


async def delete(s: Session, tag: str, cmd: c.Delete) -> Outcome:
    if canonical(cmd.mailbox) == "INBOX":
        s.tagged(tag, b"NO", b"[CANNOT] INBOX cannot be deleted")
        return Outcome.CONTINUE
    await s.ctx.store.delete_mailbox(_user(s), cmd.mailbox)
    s.ctx.hub.accounts.committed(_user(s), name=canonical(cmd.mailbox))
    s.tagged(tag, b"OK", b"DELETE completed")
    return Outcome.CONTINUE


async def rename(s: Session, tag: str, cmd: c.Rename) -> Outcome:
    try:
        renamed = await s.ctx.store.rename_mailbox(_user(s), cmd.mailbox, cmd.new_name)
    except StoreError as exc:
        return s.store_failed(tag, exc, Context.CREATE)
    s.ctx.hub.accounts.committed(_user(s), name=renamed.name)
    s.tagged(tag, b"OK", b"RENAME completed")
    return Outcome.CONTINUE


async def subscribe(s: Session, tag: str, cmd: c.Subscribe | c.Unsubscribe) -> Outcome:
    on = isinstance(cmd, c.Subscribe)
    await s.ctx.store.subscribe(_user(s), cmd.mailbox, on)
    s.ctx.hub.accounts.committed(_user(s), name=canonical(cmd.mailbox))
    s.tagged(tag, b"OK", b"SUBSCRIBE completed" if on else b"UNSUBSCRIBE completed")
    return Outcome.CONTINUE


# ---- LIST / LSUB / STATUS -----------------------------------------------------------
def _status_items(items: Sequence[c.StatusItem], st: MailboxStatus, store_id: int) -> bytes:
    values = {
        c.StatusItem.MESSAGES: st.messages,
        c.StatusItem.RECENT: st.recent,
        c.StatusItem.UIDNEXT: st.uidnext,
        c.StatusItem.UIDVALIDITY: st.uidvalidity,
        c.StatusItem.UNSEEN: st.unseen,
        c.StatusItem.HIGHESTMODSEQ: st.highestmodseq,
        c.StatusItem.SIZE: st.size,
        c.StatusItem.DELETED: st.deleted,
    }
    pairs = [
        b"MAILBOXID (%s)" % object_ids.mailbox_id(store_id, st.uidvalidity).encode()
        if i is c.StatusItem.MAILBOXID
        else b"%s %d" % (i.value.encode(), values[i])
        for i in items
    ]
    return b"(" + b" ".join(pairs) + b")"


def _attributes(mb: MailboxInfo, subscribed: bool, *, children: bool = True, special_use: bool = True) -> list[str]:
    attrs = []
    if children:
        attrs.append("\\HasChildren" if mb.has_children else "\\HasNoChildren")
    if mb.noselect:
        attrs.append("\\Noselect")
    if subscribed and mb.subscribed:
        attrs.append("\\Subscribed")
    if special_use and mb.special_use:
        attrs.append(mb.special_use)
    return attrs


def _parents_of_subscribed(boxes: Sequence[MailboxInfo]) -> set[str]:
    """Names having a subscribed descendant (RECURSIVEMATCH), in one pass over the names."""
    parents: set[str] = set()
    for mb in boxes:
        if mb.subscribed:
            cut = mb.name.rfind(DELIMITER)
            while cut > 0:
                parents.add(mb.name[:cut])
                cut = mb.name.rfind(DELIMITER, 0, cut)
    return parents


async def list_(s: Session, tag: str, cmd: c.List) -> Outcome:
    if cmd.patterns == ("",):
        s.emit(b'* LIST (\\Noselect) "/" ""\r\n')
        s.tagged(tag, b"OK", b"LIST completed")
        return Outcome.CONTINUE
    sel_subscribed = c.ListSelection.SUBSCRIBED in cmd.selection
    want_status = cmd.status is not None
    boxes = await s.ctx.store.list_mailboxes(_user(s), with_status=want_status)
    # A pattern that is not valid modified UTF-7 matches no mailbox.
    patterns = [join_reference(cmd.reference, p) for p in cmd.patterns if not isinstance(p, mutf7.UndecodableName)]
    show_subscribed = sel_subscribed or c.ListReturn.SUBSCRIBED in cmd.returns
    parents_of_subscribed = _parents_of_subscribed(boxes) if sel_subscribed else set()
    cpu = CpuSlice()
    for mb in boxes:
        await cpu.tick()
        if not any(matches(p, mb.name) for p in patterns):
            continue
        if mb.nonexistent:
            # A subscription without its mailbox: only the SUBSCRIBED selection shows it (RFC 5258 3).
            if sel_subscribed:
                s.emit(b'* LIST (\\Subscribed \\NonExistent) "/" %s\r\n' % mailbox_name(mb.name, utf8=_names(s)))
            continue
        if c.ListSelection.SPECIAL_USE in cmd.selection and not mb.special_use:
            continue
        extra = b""
        if sel_subscribed and not mb.subscribed:
            if c.ListSelection.RECURSIVEMATCH not in cmd.selection:
                continue
            if mb.name not in parents_of_subscribed:
                continue
            extra = b' ("CHILDINFO" ("SUBSCRIBED"))'
        # Extended LIST returns what its options ask for (RFC 5258 4, RFC 6154 2), as Dovecot does.
        attrs = " ".join(
            _attributes(
                mb,
                show_subscribed,
                children=not cmd.extended or c.ListReturn.CHILDREN in cmd.returns,
                special_use=not cmd.extended
                or c.ListReturn.SPECIAL_USE in cmd.returns
                or c.ListSelection.SPECIAL_USE in cmd.selection,
            )
        ).encode()
        s.emit(b'* LIST (%s) "/" %s%s\r\n' % (attrs, mailbox_name(mb.name, utf8=_names(s)), extra))
        if cmd.status is not None and mb.status is not None and not mb.noselect:
            s.emit(
                b"* STATUS "
                + mailbox_name(mb.name, utf8=_names(s))
                + b" "
                + _status_items(cmd.status, mb.status, mb.mailbox_id)
                + b"\r\n"
            )
        await s.maybe_flush()
    s.tagged(tag, b"OK", b"LIST completed")
    return Outcome.CONTINUE


async def lsub(s: Session, tag: str, cmd: c.Lsub) -> Outcome:
    boxes = await s.ctx.store.list_mailboxes(_user(s), subscribed_only=True)
    pattern = join_reference(cmd.reference, cmd.pattern)
    if isinstance(cmd.pattern, mutf7.UndecodableName):
        boxes = []
    listed = {mb.name for mb in boxes if mb.subscribed and matches(pattern, mb.name)}
    lines: dict[str, bytes] = {}
    cpu = CpuSlice()
    for mb in boxes:
        await cpu.tick()
        if mb.name in listed:
            lines[mb.name] = mb.special_use.encode()
        elif mb.subscribed and "%" in pattern:
            # RFC 3501 6.3.9: a parent that "%" matches is listed \Noselect when only a child is subscribed.
            parts = mb.name.split(DELIMITER)
            for depth in range(1, len(parts)):
                parent = DELIMITER.join(parts[:depth])
                if parent not in listed and parent not in lines and matches(pattern, parent):
                    lines[parent] = b"\\Noselect"
    for name, attrs in lines.items():
        s.emit(b'* LSUB (%s) "/" %s\r\n' % (attrs, mailbox_name(name, utf8=_names(s))))
    s.tagged(tag, b"OK", b"LSUB completed")
    return Outcome.CONTINUE


async def status(s: Session, tag: str, cmd: c.Status) -> Outcome:
    info = await s.ctx.store.status(_user(s), cmd.mailbox)
    assert info.status is not None
    s.emit(
        b"* STATUS "
        + mailbox_name(info.name, utf8=_names(s))
        + b" "
        + _status_items(cmd.items, info.status, info.mailbox_id)
        + b"\r\n"
    )
    s.tagged(tag, b"OK", b"STATUS completed")
    return Outcome.CONTINUE


# ---- NAMESPACE / ENABLE / QUOTA ------------------------------------------------------
async def namespace(s: Session, tag: str, cmd: c.Namespace) -> Outcome:
    s.emit(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
    s.tagged(tag, b"OK", b"NAMESPACE completed")
    return Outcome.CONTINUE


async def enable(s: Session, tag: str, cmd: c.Enable) -> Outcome:
    if s.state is ConnectionState.SELECTED and s.selected is not None and "QRESYNC" in cmd.capabilities:
        s.selected.qresync = True
    canonical_names = {name.upper(): name for name in _ENABLABLE}  # the grammar upper-cases keywords
    newly = [canonical_names[cap.upper()] for cap in cmd.capabilities if cap.upper() in canonical_names]
    s.enabled.update(newly)
    if s.rev2 and s.selected is not None:
        s.selected.no_recent = True  # from now on this session shows no \Recent (RFC 9051)
        s.selected.recent.clear()
        s.selected.recent_range = (0, 0)
        s.selected.announced_recent = 0
    if "QRESYNC" in s.enabled:
        s.enabled.add("CONDSTORE")
    if s.selected is not None:
        s.selected.condstore = "CONDSTORE" in s.enabled
        s.selected.qresync = "QRESYNC" in s.enabled
    if newly:
        s.emit(b"* ENABLED" + b"".join(b" " + cap.encode() for cap in newly) + b"\r\n")
    s.tagged(tag, b"OK", b"ENABLE completed")
    return Outcome.CONTINUE


async def _quota_line(s: Session) -> bytes:
    q = await s.ctx.store.get_quota(_user(s))
    if not q.limit_bytes:
        return b'* QUOTA "" ()\r\n'
    used, limit = (q.usage_bytes + 1023) // 1024, q.limit_bytes // 1024
    return b'* QUOTA "" (STORAGE %d %d)\r\n' % (used, limit)


async def getquota(s: Session, tag: str, cmd: c.GetQuota) -> Outcome:
    if cmd.root != "":
        s.tagged(tag, b"NO", b"[NONEXISTENT] No such quota root")
        return Outcome.CONTINUE
    s.emit(await _quota_line(s))
    s.tagged(tag, b"OK", b"GETQUOTA completed")
    return Outcome.CONTINUE


async def getquotaroot(s: Session, tag: str, cmd: c.GetQuotaRoot) -> Outcome:
    line = await _quota_line(s)
    s.emit(b"* QUOTAROOT " + mailbox_name(canonical(cmd.mailbox), utf8=_names(s)) + b' ""\r\n')
    s.emit(line)
    s.tagged(tag, b"OK", b"GETQUOTAROOT completed")
    return Outcome.CONTINUE


async def setquota(s: Session, tag: str, cmd: c.SetQuota) -> Outcome:
    s.tagged(tag, b"NO", b"[NOPERM] Quotas are set by the administrator")
    return Outcome.CONTINUE
