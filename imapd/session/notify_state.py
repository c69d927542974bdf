"""What one session's NOTIFY (RFC 5465) asked for and what is waiting to be told.

Pure bookkeeping, no I/O: `take` turns one account-feed event into pending
notifications; notify_commands renders them (STATUS needs a store read) when
the session next sends untagged output. Everything pending is bounded: past
`MAX_PENDING` the state is `overflowed` and the session answers with
[NOTIFICATIONOVERFLOW] and stops notifying, as RFC 5465 section 5.8 allows.
When the account feed dropped events for the session, `resync` works out the
same notifications from one listing of the account's mailboxes with status:
a STATUS only for the mailboxes whose status differs from what the session
knew (told, or listed at NOTIFY SET): notifications are owed for changes
(RFC 5465 5.1-5.3), not one for every watched mailbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from imapd.protocol import commands as c
from imapd.protocol.fetch_spec import FetchAttribute
from imapd.session.list_match import DELIMITER
from imapd.store_client import ChangeEvent, MailboxInfo

SUPPORTED_EVENTS: Final = ("MessageNew", "MessageExpunge", "FlagChange", "MailboxName", "SubscriptionChange")
_BY_UPPER: Final = {name.upper(): name for name in SUPPORTED_EVENTS}
MESSAGE_EVENTS: Final = frozenset({"MessageNew", "MessageExpunge", "FlagChange"})
_SELECTED_FILTERS: Final = (c.NotifyFilter.SELECTED, c.NotifyFilter.SELECTED_DELAYED)
# Distinct mailboxes with a STATUS to send plus LIST lines waiting, per session.
MAX_PENDING: Final = 1000


class NotifyRefused(Exception):
    """A NOTIFY SET the session cannot take: `bad` for BAD, else NO [BADEVENT]."""

    def __init__(self, text: str, *, bad: bool) -> None:
        super().__init__(text)
        self.bad = bad


@dataclass(frozen=True, slots=True)
class Group:
    filter: c.NotifyFilter
    mailboxes: tuple[str, ...]
    events: frozenset[str]


@dataclass(frozen=True, slots=True)
class ListChange:
    """One LIST notification (RFC 5465 5.4/5.5)."""

    name: str
    old_name: str = ""  # a rename: OLDNAME
    gone: bool = False  # deleted: \NonExistent
    subscribed: bool | None = None  # SubscriptionChange: the new state


def compile_groups(groups: tuple[c.NotifyGroup, ...]) -> tuple[tuple[Group, ...], tuple[FetchAttribute, ...]]:
    """Canonical groups and the selected mailbox's MessageNew fetch-att; NotifyRefused if unusable."""
    out: list[Group] = []
    unsupported: list[str] = []
    fetch: tuple[FetchAttribute, ...] = ()
    for g in groups:
        if g.fetch and g.filter not in _SELECTED_FILTERS:
            raise NotifyRefused("MessageNew fetch attributes only for the selected mailbox", bad=True)
        fetch = fetch or g.fetch
        events = set()
        for raw in g.events:
            name = _BY_UPPER.get(raw)
            if name is None:
                unsupported.append(raw)
            else:
                events.add(name)
        out.append(Group(g.filter, g.mailboxes, frozenset(events)))
    if unsupported:
        raise NotifyRefused("Unsupported NOTIFY events", bad=False)
    return tuple(out), fetch


@dataclass
class NotifyState:
    groups: tuple[Group, ...]
    names: dict[int, str]  # the account's mailboxes: id -> name
    subscribed: set[str]  # for the SUBSCRIBED filter, kept current as events arrive
    announced_subscribed: set[str]  # what the client was last told (a change undone in between is no news)
    pending_status: dict[str, set[str]] = field(default_factory=dict)  # name -> message events seen
    pending_lists: list[ListChange] = field(default_factory=list)
    pending_subscriptions: dict[str, bool] = field(default_factory=dict)
    # Per mailbox: (messages, uidnext, unseen, uidvalidity, highestmodseq) last told.
    last: dict[str, tuple[int, int, int, int, int]] = field(default_factory=dict)
    # The same, as listed at NOTIFY SET (told or not): what a resync compares a mailbox
    # never told since with, so only the ones that changed get a STATUS.
    known: dict[str, tuple[int, int, int, int, int]] = field(default_factory=dict)
    overflowed: bool = False
    # MessageNew's fetch-att for the selected mailbox: a FETCH of them follows the EXISTS.
    selected_fetch: tuple[FetchAttribute, ...] = ()

    # ---- matching ---------------------------------------------------------------------
    def events_for(self, name: str) -> frozenset[str]:
        """Events the client wants for a mailbox other than the selected one (first matching group)."""
        for g in self.groups:
            if self._matches(g, name):
                return g.events
        return frozenset()

    def _matches(self, g: Group, name: str) -> bool:
        f = g.filter
        if f in _SELECTED_FILTERS:
            return False
        if f is c.NotifyFilter.PERSONAL:
            return True
        if f is c.NotifyFilter.INBOXES:
            return name == "INBOX"
        if f is c.NotifyFilter.SUBSCRIBED:
            return name in self.subscribed
        if f is c.NotifyFilter.MAILBOXES:
            return name in g.mailboxes
        return any(name == root or name.startswith(root + DELIMITER) for root in g.mailboxes)

    # ---- events -----------------------------------------------------------------------
    def take(self, event: ChangeEvent, selected_id: int | None) -> None:
        if event.heartbeat or self.overflowed:
            return
        if event.subscribed or event.unsubscribed:
            self._subscription(event.name, event.subscribed)
        elif event.created:
            if self.names.get(event.mailbox_id) == event.name:
                return  # a resync told it already
            self.names[event.mailbox_id] = event.name
            if "MailboxName" in self.events_for(event.name):
                self._list(ListChange(event.name))
        elif event.renamed:
            if self.names.get(event.mailbox_id) == event.name:
                return  # a resync told it already
            old = event.old_name or self.names.get(event.mailbox_id, "")
            self.names[event.mailbox_id] = event.name
            if old in self.last:
                self.last[event.name] = self.last.pop(old)
            if old in self.known:
                self.known[event.name] = self.known.pop(old)
            wanted = self.events_for(event.name) | (self.events_for(old) if old else frozenset())
            if "MailboxName" in wanted:
                self._list(ListChange(event.name, old_name=old))
        elif event.deleted:
            if event.mailbox_id not in self.names:
                return  # a resync told it already (or it was never this account's)
            name = self.names.pop(event.mailbox_id)
            self.pending_status.pop(name, None)
            self.last.pop(name, None)
            self.known.pop(name, None)
            if name and "MailboxName" in self.events_for(name):
                self._list(ListChange(name, gone=True))
        elif event.mailbox_id != selected_id:
            self._message_events(event)

    def resync(self, boxes: Sequence[MailboxInfo], selected_id: int | None) -> None:
        """The feed dropped events for this session: the notifications they would have made,
        from the account's mailboxes now (`list_mailboxes(with_status=True)`). Mailbox and
        subscription changes by comparison; a STATUS for each watched mailbox whose status
        is not the one last told (or, never told, the one listed at NOTIFY SET); one that
        came after the SET is news when it holds messages."""
        if self.overflowed:
            return
        now = {mb.mailbox_id: mb for mb in boxes if not mb.nonexistent}
        for mailbox_id, name in list(self.names.items()):
            if mailbox_id not in now:
                self.take(ChangeEvent(mailbox_id, 0, deleted=True, name=name), selected_id)
        for mailbox_id, mb in now.items():
            known = self.names.get(mailbox_id)
            if known is None:
                self.take(ChangeEvent(mailbox_id, 0, created=True, name=mb.name), selected_id)
            elif known != mb.name:
                self.take(ChangeEvent(mailbox_id, 0, renamed=True, name=mb.name, old_name=known), selected_id)
        subscribed = {mb.name for mb in boxes if mb.subscribed}
        for name in sorted(subscribed ^ self.subscribed):
            self._subscription(name, name in subscribed)
        for mailbox_id, mb in now.items():
            st = mb.status
            if mailbox_id == selected_id or mb.noselect or st is None:
                continue
            wanted = self.events_for(mb.name) & MESSAGE_EVENTS
            if not wanted:
                continue
            before = self.last.get(mb.name) or self.known.get(mb.name)
            now_status = (st.messages, st.uidnext, st.unseen, st.uidvalidity, st.highestmodseq)
            if before == now_status or (before is None and not st.messages):
                continue
            if mb.name not in self.pending_status and self._full():
                return
            self.pending_status.setdefault(mb.name, set()).update(wanted)

    def _message_events(self, event: ChangeEvent) -> None:
        name = self.names.get(event.mailbox_id)
        if name is None:
            return
        wanted = self.events_for(name)
        seen = {
            kind
            for kind, happened in (
                ("MessageNew", bool(event.added)),
                ("MessageExpunge", bool(event.expunged)),
                ("FlagChange", bool(event.flags)),
            )
            if happened and kind in wanted
        }
        if not seen:
            return
        if name not in self.pending_status and self._full():
            return
        self.pending_status.setdefault(name, set()).update(seen)

    def _subscription(self, name: str, on: bool) -> None:
        if on:
            self.subscribed.add(name)
        else:
            self.subscribed.discard(name)
        if "SubscriptionChange" in self.events_for(name):
            if name not in self.pending_subscriptions and self._full():
                return
            self.pending_subscriptions[name] = on

    def _list(self, change: ListChange) -> None:
        if not self._full():
            self.pending_lists.append(change)

    def _full(self) -> bool:
        if len(self.pending_status) + len(self.pending_lists) + len(self.pending_subscriptions) >= MAX_PENDING:
            self.overflowed = True
            self.pending_status.clear()
            self.pending_lists.clear()
            self.pending_subscriptions.clear()
        return self.overflowed

    def take_lists(self) -> list[ListChange]:
        """LIST notifications to send now, in the order they happened; subscription changes
        that ended where the client last saw them are dropped."""
        out, self.pending_lists = self.pending_lists, []
        for name, on in self.pending_subscriptions.items():
            if (name in self.announced_subscribed) != on:
                out.append(ListChange(name, subscribed=on))
                if on:
                    self.announced_subscribed.add(name)
                else:
                    self.announced_subscribed.discard(name)
        self.pending_subscriptions.clear()
        return out

    def take_status(self) -> dict[str, set[str]]:
        out, self.pending_status = self.pending_status, {}
        return out


def status_items(
    state: NotifyState, name: str, now: tuple[int, int, int, int, int], events: set[str], validity_told: set[str]
) -> bytes | None:
    """The STATUS attributes to send for a changed mailbox, None if nothing the client asked about
    changed. As Dovecot: MESSAGES/UIDNEXT/UNSEEN when the count or UIDNEXT moved, else UNSEEN if it
    moved; HIGHESTMODSEQ always (a FlagChange is only visible through it); UIDVALIDITY once per
    session and mailbox (`validity_told`, kept by the caller; a SET STATUS answer counts) or when it changed."""
    messages, uidnext, unseen, uidvalidity, modseq = now
    before = state.last.get(name)
    state.last[name] = now
    if before is not None and before == now:
        return None
    moved = before is None or before[:2] != now[:2] or before[3] != uidvalidity
    unseen_moved = before is not None and before[2] != unseen
    if not moved and not unseen_moved and "FlagChange" not in events:
        return None
    parts: list[bytes] = []
    if moved:
        parts += [b"MESSAGES %d" % messages, b"UIDNEXT %d" % uidnext]
        if name not in validity_told or (before is not None and before[3] != uidvalidity):
            parts.append(b"UIDVALIDITY %d" % uidvalidity)
            if len(validity_told) >= MAX_PENDING:
                validity_told.clear()  # bounded: a mailbox then shows its UIDVALIDITY once more
            validity_told.add(name)
    if moved or unseen_moved:
        parts.append(b"UNSEEN %d" % unseen)
    parts.append(b"HIGHESTMODSEQ %d" % modseq)
    return b"(" + b" ".join(parts) + b")"
