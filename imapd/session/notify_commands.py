"""NOTIFY (RFC 5465): the command, and the notifications it asks for.

NOTIFY SET joins the user's account feed (imapd.account_hub: one store stream
per user and process, whatever the number of mailboxes or sessions); events
are taken into the session's NotifyState as they arrive and sent with the
session's other untagged output: before a command's tagged reply and during
IDLE. Mailboxes other than the selected one get STATUS (message events) and
LIST (MailboxName, SubscriptionChange); the selected mailbox keeps its usual
EXISTS/EXPUNGE/FETCH.
"""

from __future__ import annotations

import logging
from typing import Final

import trio

from imapd.errors import StoreError, StoreErrorKind
from imapd.protocol import commands as c
from imapd.protocol.sequence import SequenceSet
from imapd.session.mailbox_commands import mailbox_name
from imapd.session.message_commands import fetch
from imapd.session.notify_state import (
    MESSAGE_EVENTS,
    SUPPORTED_EVENTS,
    ListChange,
    NotifyRefused,
    NotifyState,
    compile_groups,
    status_items,
)
from imapd.session.session import Outcome, Session

log = logging.getLogger("imapd.notify")

_BADEVENT = b"[BADEVENT (" + " ".join(SUPPORTED_EVENTS).encode() + b")]"


async def notify(s: Session, tag: str, cmd: c.Notify) -> Outcome:
    if cmd.groups is None:
        stop(s)
        s.tagged(tag, b"OK", b"NOTIFY completed")
        return Outcome.CONTINUE
    try:
        groups, fetch = compile_groups(cmd.groups)
    except NotifyRefused as exc:  # a refused SET leaves the settings in force
        if exc.bad:
            s.tagged(tag, b"BAD", str(exc).encode())
        else:
            s.tagged(tag, b"NO", _BADEVENT + b" " + str(exc).encode())
        return Outcome.CONTINUE
    assert s.user is not None
    # Joined before listing, so nothing committed in between is missed; and before leaving the
    # previous SET's subscription, so the user's store stream stays open across a new SET.
    sub = s.ctx.hub.accounts.subscribe(s.user)
    try:
        # With status either way: a resync compares with it (NotifyState.known).
        boxes = await s.ctx.store.list_mailboxes(s.user, with_status=True)
    except BaseException:
        sub.close()
        raise
    stop(s)
    subscribed = {mb.name for mb in boxes if mb.subscribed}
    state = NotifyState(
        groups,
        {mb.mailbox_id: mb.name for mb in boxes if not mb.nonexistent},
        subscribed,
        set(subscribed),
        selected_fetch=fetch,
    )
    s.notify, s.notify_feed, s.notifier = state, sub, NOTIFIER
    selected = s.selected.mailbox_id if s.selected is not None else None
    for mb in boxes:
        st = mb.status
        if st is None or mb.noselect or mb.nonexistent:
            continue
        now = (st.messages, st.uidnext, st.unseen, st.uidvalidity, st.highestmodseq)
        state.known[mb.name] = now  # every mailbox: the selected one, or one watched later, too
        if mb.mailbox_id == selected or not (state.events_for(mb.name) & MESSAGE_EVENTS):
            continue
        if cmd.status:
            state.last[mb.name] = now
            s.notify_validity_told.add(mb.name)
            s.emit(
                b"* STATUS %s (MESSAGES %d UIDNEXT %d UIDVALIDITY %d UNSEEN %d HIGHESTMODSEQ %d)\r\n"
                % (
                    mailbox_name(mb.name, utf8=s.utf8_names),
                    st.messages,
                    st.uidnext,
                    st.uidvalidity,
                    st.unseen,
                    st.highestmodseq,
                )
            )
    s.tagged(tag, b"OK", b"NOTIFY completed")
    return Outcome.CONTINUE


def stop(s: Session) -> None:
    """NOTIFY NONE, a new NOTIFY SET, an overflow or the end of the session."""
    if s.notify_feed is not None:
        s.notify_feed.close()
    s.notify, s.notify_feed, s.notifier = None, None, None


def absorb(s: Session) -> None:
    """Take whatever the account feed delivered so far (never waits); nothing while the
    feed has dropped events for this session (`resync` first)."""
    state, sub = s.notify, s.notify_feed
    if state is None or sub is None or sub.stale:
        return
    selected = s.selected.mailbox_id if s.selected is not None else None
    while True:
        try:
            event = sub.receive.receive_nowait()
        except trio.WouldBlock:
            return
        except (trio.EndOfChannel, trio.ClosedResourceError):
            state.overflowed = True  # the store went away: events were lost
            return
        state.take(event, selected)


async def resync(s: Session) -> None:
    """The account feed dropped events for this session (it fell behind, or the store cut
    the stream off): compare the account's mailboxes now with what the client was told.
    On a store failure the session tries again at its next command."""
    state, sub = s.notify, s.notify_feed
    if state is None or sub is None or not sub.stale or s.user is None:
        return
    sub.resynced()
    boxes = None
    try:
        boxes = await s.ctx.store.list_mailboxes(s.user, with_status=True)
    except StoreError as exc:
        log.warning("resynchronising NOTIFY failed: %s", exc.kind.value)
        return
    finally:
        if boxes is None:  # failed or cancelled (DONE during IDLE): again at the next turn
            sub.stale = True
    state.resync(boxes, s.selected.mailbox_id if s.selected is not None else None)


async def emit(s: Session) -> None:
    """Queue the pending notifications as untagged responses."""
    state = s.notify
    if state is None or s.user is None:
        return
    await resync(s)
    absorb(s)
    if state.overflowed:
        stop(s)
        s.emit(b"* OK [NOTIFICATIONOVERFLOW] Too many notifications; NOTIFY is off, send NOTIFY again\r\n")
        return
    for change in state.take_lists():
        s.emit(_list_line(s, change))
    for name, events in state.take_status().items():
        try:
            info = await s.ctx.store.status(s.user, name)
        except StoreError as exc:
            if exc.kind is StoreErrorKind.NOT_FOUND:
                continue  # deleted meanwhile: its LIST (\NonExistent) says so
            raise
        st = info.status
        if st is None:
            continue
        now = (st.messages, st.uidnext, st.unseen, st.uidvalidity, st.highestmodseq)
        items = status_items(state, name, now, events, s.notify_validity_told)
        if items is not None:
            s.emit(b"* STATUS " + mailbox_name(name, utf8=s.utf8_names) + b" " + items + b"\r\n")


_INTERNAL_TAG = "*notify*"


async def fetch_new(s: Session, uids: list[int]) -> None:
    """MessageNew with fetch-att (RFC 5465 5.2): a FETCH of the new messages after their EXISTS,
    made by the FETCH command's own code (its tagged line is dropped)."""
    state = s.notify
    if state is None or not state.selected_fetch or not uids:
        return
    status = s.last_status
    command = c.Fetch(SequenceSet.from_numbers(uids), state.selected_fetch, uid=True)
    await fetch(s, _INTERNAL_TAG, command)
    s.drop_tagged(_INTERNAL_TAG)
    s.last_status = status


def _list_line(s: Session, change: ListChange) -> bytes:
    if change.gone:
        attrs = b"\\NonExistent"
    elif change.subscribed:
        attrs = b"\\Subscribed"
    else:
        attrs = b""
    line = b'* LIST (%s) "/" %s' % (attrs, mailbox_name(change.name, utf8=s.utf8_names))
    if change.old_name:
        line += b' ("OLDNAME" (%s))' % mailbox_name(change.old_name, utf8=s.utf8_names)
    return line + b"\r\n"


class _Notifier:
    """The session's handle on this module (session.Notifier)."""

    async def emit(self, session: Session) -> None:
        await emit(session)

    async def fetch_new(self, session: Session, uids: list[int]) -> None:
        await fetch_new(session, uids)


NOTIFIER: Final = _Notifier()
