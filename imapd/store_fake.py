"""In-memory store with the store API's semantics, for fast tests of imapd.

Same rules as the real store: per-mailbox modseq and UIDVALIDITY (new on
create, so delete+create or rename-over changes it), default folders for new
users, writer-epoch fencing on every write, a change feed per mailbox.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import time
from collections.abc import AsyncGenerator, AsyncIterable, Sequence
from dataclasses import dataclass, field, replace

import trio

from imapd.errors import StoreError, StoreErrorKind
from imapd.store_client import (
    AppendResult,
    AppendSpec,
    ChangeEvent,
    CopyResult,
    ExpungeResult,
    FetchedMessage,
    FetchRequest,
    FlagMode,
    IndexColumns,
    IndexQuery,
    MailboxInfo,
    MailboxStatus,
    MessageFacts,
    MessageMeta,
    MetadataRefusal,
    OwnWrites,
    QuotaInfo,
    SelectResult,
    StoreFlagsResult,
)
from mailparse import search_text
from mailparse.preview import preview_text
from mailparse.search_fields import indexed_text, text_matches
from mailparse.sort_keys import stored_keys
from mailparse.view import MessageView, ParsedMessage
from store import names, uidset
from store.errors import InvalidArgument, LimitExceeded

_SLASH = re.compile("/")

DEFAULT_MAILBOXES: tuple[tuple[str, str], ...] = (
    ("INBOX", ""),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)


def _text_holds(parsed: ParsedMessage, needle: str, body_only: bool) -> bool:
    if needle in search_text.body_text(parsed):
        return True
    return not body_only and (
        needle in search_text.header_text(parsed) or needle in search_text.mime_header_text(parsed)
    )


@dataclass
class _Message:
    uid: int
    modseq: int
    flags: set[str]
    data: bytes
    internal_date: int
    tz_offset_minutes: int
    save_date: int = 0
    body_id: int = 0  # shared by copies, as the store's (the EMAILID)
    added_modseq: int = 0  # the MODSEQ it came in with (a watch's catch-up tells added from changed)

    def __post_init__(self) -> None:
        self.added_modseq = self.added_modseq or self.modseq

    def meta(self, with_header: bool = False, with_facts: bool = False) -> MessageMeta:
        header: bytes | None = None
        if with_header:
            end = self.data.find(b"\r\n\r\n")
            header = self.data if end < 0 else self.data[: end + 4]
        return MessageMeta(
            uid=self.uid,
            modseq=self.modseq,
            flags=tuple(sorted(self.flags)),
            internal_date=self.internal_date,
            tz_offset_minutes=self.tz_offset_minutes,
            size=len(self.data),
            header=header,
            facts=MessageFacts(self.save_date, self.body_id, preview_text(self.data)) if with_facts else None,
        )


@dataclass
class _Mailbox:
    name: str
    mailbox_id: int
    uidvalidity: int
    special_use: str = ""
    subscribed: bool = True
    uidnext: int = 1
    highestmodseq: int = 1
    messages: dict[int, _Message] = field(default_factory=dict)
    expunged_log: list[tuple[int, int]] = field(default_factory=list)  # (uid, modseq)
    watchers: list[trio.MemorySendChannel[ChangeEvent]] = field(default_factory=list)
    recent_boundary: int = 1  # UIDs >= this: \Recent, not claimed by a session yet
    noselect: bool = False  # deleted while it had children: kept, empty, as their parent
    owner: str = ""


@dataclass
class _User:
    name: str
    password: str
    quota: int
    mailboxes: dict[str, _Mailbox] = field(default_factory=dict)
    lone_subscriptions: set[str] = field(default_factory=set)  # subscribed names without a mailbox
    # METADATA: (mailbox id, 0 = server; entry lower-cased) -> (entry, value)
    metadata: dict[tuple[int, str], tuple[str, bytes]] = field(default_factory=dict)


_METADATA_MAX_VALUE = 64 * 1024
_METADATA_MAX_ENTRIES = 500
_METADATA_MAX_TOTAL = 1024 * 1024
_METADATA_NAME = re.compile(r"/(?:private|shared)(?:/[^/*%\x00-\x1f\x7f]+)+", re.IGNORECASE)
_METADATA_SCOPE = re.compile(r"/(?:private|shared)", re.IGNORECASE)


def _metadata_name(name: str, *, lookup: bool = False) -> str:
    if len(name.encode()) > 255 or not (_METADATA_NAME.fullmatch(name) or (lookup and _METADATA_SCOPE.fullmatch(name))):
        raise StoreError(StoreErrorKind.INVALID, f"metadata: invalid entry name {name[:64]!r}")
    return name.lower()


def _norm(name: str) -> str:
    """The store's canonical mailbox name (store/names.py), or INVALID as the store refuses it."""
    try:
        return names.mailbox_name(name)
    except InvalidArgument as exc:
        raise StoreError(StoreErrorKind.INVALID, str(exc)) from None


def _flags(values: Sequence[str]) -> set[str]:
    """Flags as the store canonicalises them (\\flagged -> \\Flagged), with its refusals."""
    try:
        return set(names.flags(values))
    except InvalidArgument as exc:
        raise StoreError(StoreErrorKind.INVALID, str(exc)) from None
    except LimitExceeded as exc:
        raise StoreError(StoreErrorKind.LIMIT, str(exc)) from None


def _keyword_room(mbox: _Mailbox, flags: set[str]) -> None:
    """LIMIT if `flags` would give the mailbox more distinct keywords than the store allows."""
    wanted = {f for f in flags if not f.startswith("\\")}
    if not wanted:
        return
    present = {f for m in mbox.messages.values() for f in m.flags if not f.startswith("\\")}
    if len(present | wanted) > names.MAX_KEYWORDS_PER_MAILBOX:
        raise StoreError(StoreErrorKind.LIMIT, f"limit: more than {names.MAX_KEYWORDS_PER_MAILBOX} keywords")


class FakeStore:
    """Implements `imapd.store_client.StoreClient` in memory."""

    def __init__(self, epoch: int = 1, max_message_size: int = 20 * 1024 * 1024) -> None:
        self.stored_epoch = epoch
        self.client_epoch = epoch
        self.max_message_size = max_message_size
        self.unavailable = False
        self._users: dict[str, _User] = {}
        self._addresses: dict[str, str] = {}  # lower-cased address -> user, as the store's address table
        self._next_id = 1
        self._next_uidvalidity = int(time.time()) % 1_000_000_000
        self.calls = 0  # store round trips, for "one call per command" tests
        self.fetch_requests: list[FetchRequest] = []
        self.index_queries: list[IndexQuery] = []
        self._body_ids = itertools.count(1)
        self._account_watchers: dict[str, list[trio.MemorySendChannel[ChangeEvent]]] = {}

    # ---- administration (tests) ------------------------------------------
    def create_user(self, name: str, password: str, quota: int = 0, default_mailboxes: bool = True) -> None:
        user = _User(name, password, quota)
        self._users[name] = user
        if default_mailboxes:
            for mbox, special in DEFAULT_MAILBOXES:
                self._new_mailbox(user, mbox, special)

    def add_address(self, address: str, user: str) -> None:
        """A login (and delivery) address of `user`, as `mailha user address add`."""
        self._user(user)
        self._addresses[address.lower()] = user

    def open_watches(self) -> int:
        """Change feeds being watched now (a feed starts a moment after the SELECT that wants it)."""
        return sum(len(m.watchers) for u in self._users.values() for m in u.mailboxes.values())

    def break_watches(self) -> None:
        """End every change feed as a store restart would (no deleted/renamed event)."""
        for user in self._users.values():
            for mbox in user.mailboxes.values():
                for send in mbox.watchers:
                    send.close()
                mbox.watchers.clear()
        for watchers in self._account_watchers.values():
            for send in watchers:
                send.close()
            watchers.clear()

    def fence(self, epoch: int) -> None:
        """Another writer took over: this client's writes fail from now on."""
        self.stored_epoch = epoch

    # ---- helpers ------------------------------------------------------------
    def _user(self, name: str) -> _User:
        try:
            names.user_name(name)  # like the store: a name it could not hold is INVALID, not unknown
        except InvalidArgument as exc:
            raise StoreError(StoreErrorKind.INVALID, str(exc)) from None
        user = self._users.get(name)
        if user is None:
            raise StoreError(StoreErrorKind.NOT_FOUND, f"no user {name}")
        return user

    def _mailbox(self, user: str, name: str) -> _Mailbox:
        mbox = self._user(user).mailboxes.get(_norm(name))
        if mbox is None:
            raise StoreError(StoreErrorKind.NOT_FOUND, f"no mailbox {name}")
        return mbox

    def _by_id(self, user: str, mailbox_id: int) -> _Mailbox:
        """A selectable mailbox by id (every message operation goes through here)."""
        for mbox in self._user(user).mailboxes.values():
            if mbox.mailbox_id == mailbox_id:
                return self._selectable(mbox)
        raise StoreError(StoreErrorKind.NOT_FOUND, f"no mailbox id {mailbox_id}")

    @staticmethod
    def _selectable(mbox: _Mailbox) -> _Mailbox:
        if mbox.noselect:
            raise StoreError(StoreErrorKind.PRECONDITION, f"mailbox {mbox.name!r} is \\Noselect")
        return mbox

    def _call(self) -> None:
        self.calls += 1
        if self.unavailable:
            raise StoreError(StoreErrorKind.UNAVAILABLE, "store unavailable")

    def _write(self) -> None:
        self._call()
        if self.client_epoch < self.stored_epoch:
            raise StoreError(StoreErrorKind.FENCED, f"fenced: epoch {self.client_epoch} < {self.stored_epoch}")

    def _new_mailbox(self, user: _User, name: str, special_use: str = "") -> _Mailbox:
        mbox = _Mailbox(name, self._next_id, self._next_uidvalidity, special_use, owner=user.name)
        self._next_id += 1
        self._next_uidvalidity += 1
        user.mailboxes[name] = mbox
        return mbox

    def _info(
        self, user: _User, mbox: _Mailbox, with_status: bool = True, has_children: bool | None = None
    ) -> MailboxInfo:
        prefix = mbox.name + "/"
        children = any(n.startswith(prefix) for n in user.mailboxes) if has_children is None else has_children
        status = None
        if with_status:
            msgs = mbox.messages.values()
            status = MailboxStatus(
                messages=len(mbox.messages),
                unseen=sum(1 for m in msgs if "\\Seen" not in m.flags),
                uidnext=mbox.uidnext,
                uidvalidity=mbox.uidvalidity,
                highestmodseq=mbox.highestmodseq,
                size=sum(len(m.data) for m in msgs),
                deleted=sum(1 for m in msgs if "\\Deleted" in m.flags),
                recent=sum(1 for uid in mbox.messages if uid >= mbox.recent_boundary),
            )
        return MailboxInfo(
            mbox.name, mbox.mailbox_id, mbox.special_use, mbox.subscribed, children, status, noselect=mbox.noselect
        )

    def _written_info(self, user: _User, mbox: _Mailbox) -> MailboxInfo:
        """What CREATE and RENAME answer: as the store, the status without a \\Recent count."""
        info = self._info(user, mbox)
        assert info.status is not None
        return dataclasses.replace(info, status=dataclasses.replace(info.status, recent=0))

    def _publish(self, mbox: _Mailbox, event: ChangeEvent) -> None:
        event = replace(event, user=mbox.owner)
        for send in list(mbox.watchers):
            try:
                send.send_nowait(event)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                mbox.watchers.remove(send)
        self._publish_account(event)

    def _publish_account(self, event: ChangeEvent) -> None:
        watchers = self._account_watchers.get(event.user, [])
        for send in list(watchers):
            try:
                send.send_nowait(event)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                watchers.remove(send)
                send.close()  # like the store: a subscriber that fell behind is cut off

    def _selected(self, mbox: _Mailbox, text: str) -> list[_Message]:
        try:
            ranges = uidset.parse(text).resolve(mbox.uidnext - 1)
        except InvalidArgument as exc:
            raise StoreError(StoreErrorKind.INVALID, str(exc)) from None
        return [m for uid, m in sorted(mbox.messages.items()) if uidset.contains(ranges, uid)]

    def _usage(self, user: _User) -> int:
        return sum(len(m.data) for mb in user.mailboxes.values() for m in mb.messages.values())

    def _add(self, user: _User, mbox: _Mailbox, spec: AppendSpec, data: bytes, body_id: int = 0) -> _Message:
        if len(data) > self.max_message_size:
            raise StoreError(StoreErrorKind.TOO_BIG, f"size: {len(data)} > {self.max_message_size}")
        if user.quota and self._usage(user) + len(data) > user.quota:
            raise StoreError(StoreErrorKind.OVER_QUOTA, "quota: over quota")
        mbox.highestmodseq += 1
        msg = _Message(
            mbox.uidnext,
            mbox.highestmodseq,
            set(spec.flags),
            data,
            spec.internal_date or int(time.time()),
            spec.tz_offset_minutes,
            int(time.time()),
            body_id or next(self._body_ids),
        )
        mbox.messages[msg.uid] = msg
        mbox.uidnext += 1
        return msg

    # ---- StoreClient ----------------------------------------------------------
    async def authenticate(self, name: str, password: str) -> str:
        self._call()
        await trio.lowlevel.checkpoint()
        # Like the store: a user name, or an address of one (not "any domain after the name").
        user = self._users.get(self._addresses.get(name.lower(), "") if "@" in name else name)
        if user is None or not password or user.password != password:
            raise StoreError(StoreErrorKind.UNAUTHENTICATED, "authentication failed")
        return user.name

    async def list_mailboxes(
        self, user: str, *, with_status: bool = False, subscribed_only: bool = False
    ) -> Sequence[MailboxInfo]:
        self._call()
        await trio.lowlevel.checkpoint()
        u = self._user(user)
        # One pass for "has children" (not one scan of all names per mailbox).
        parents = {name[: m.start()] for name in u.mailboxes if "/" in name for m in _SLASH.finditer(name)}
        lone = [MailboxInfo(name, 0, "", True, False, nonexistent=True) for name in sorted(u.lone_subscriptions)]
        return [
            *(
                self._info(u, mb, with_status, has_children=mb.name in parents)
                for _, mb in sorted(u.mailboxes.items())
                if mb.subscribed or not subscribed_only
            ),
            *lone,
        ]

    async def create_mailbox(self, user: str, name: str, special_use: str = "") -> MailboxInfo:
        self._write()
        await trio.lowlevel.checkpoint()
        return self._written_info(self._user(user), self._create(self._user(user), _norm(name), special_use))

    def _create(self, u: _User, name: str, special_use: str = "") -> _Mailbox:
        try:
            special_use = names.special_use(special_use)
        except InvalidArgument as exc:
            raise StoreError(StoreErrorKind.INVALID, str(exc)) from None
        placeholder = u.mailboxes.get(name)
        if placeholder is not None and placeholder.noselect:
            # Like the store: re-creating a \Noselect placeholder makes it selectable, with a new UIDVALIDITY.
            placeholder.noselect = False
            placeholder.uidvalidity = self._next_uidvalidity
            self._next_uidvalidity += 1
            placeholder.special_use = special_use
            return placeholder
        if name in u.mailboxes:
            raise StoreError(StoreErrorKind.ALREADY_EXISTS, f"mailbox {name} exists")
        # Like the store: missing parents come into being too (RFC 3501 6.3.3).
        parts = name.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in u.mailboxes:
                made = self._new_mailbox(u, parent)
                made.subscribed = False
                self._publish_account(ChangeEvent(made.mailbox_id, 0, user=u.name, name=parent, created=True))
        created = self._new_mailbox(u, name, special_use)
        created.subscribed = name in u.lone_subscriptions  # like the store: CREATE does not subscribe
        u.lone_subscriptions.discard(name)
        self._publish_account(ChangeEvent(created.mailbox_id, 0, user=u.name, name=name, created=True))
        return created

    async def delete_mailbox(self, user: str, name: str) -> None:
        self._write()
        await trio.lowlevel.checkpoint()
        u = self._user(user)
        mbox = self._mailbox(user, name)
        if mbox.name == "INBOX":
            raise StoreError(StoreErrorKind.PRECONDITION, "INBOX cannot be deleted")
        for key in [k for k in u.metadata if k[0] == mbox.mailbox_id]:
            del u.metadata[key]
        if self._info(u, mbox, False).has_children:
            # Like the store (RFC 3501 6.3.4): its messages go, the name stays as a \Noselect parent.
            if mbox.noselect:
                raise StoreError(StoreErrorKind.PRECONDITION, f"mailbox {mbox.name!r} is \\Noselect and has children")
            mbox.messages.clear()
            mbox.noselect = True
            mbox.highestmodseq += 1
        else:
            del u.mailboxes[mbox.name]
            if mbox.subscribed:
                u.lone_subscriptions.add(mbox.name)
        self._publish(mbox, ChangeEvent(mbox.mailbox_id, 0, name=mbox.name, deleted=True))

    async def rename_mailbox(self, user: str, old_name: str, new_name: str) -> MailboxInfo:
        self._write()
        await trio.lowlevel.checkpoint()
        u = self._user(user)
        src = self._mailbox(user, old_name)
        new_name = _norm(new_name)
        if new_name in u.mailboxes:
            raise StoreError(StoreErrorKind.ALREADY_EXISTS, f"mailbox {new_name} exists")
        if new_name.startswith(src.name + "/"):
            raise StoreError(StoreErrorKind.INVALID, f"cannot rename {src.name!r} into its own child")
        parts = new_name.split("/")
        for i in range(1, len(parts)):  # like CREATE: missing parents come into being
            if "/".join(parts[:i]) not in u.mailboxes:
                self._new_mailbox(u, "/".join(parts[:i])).subscribed = False
        if src.name == "INBOX":
            # Like the store (RFC 3501 6.3.5): a new mailbox (made as CREATE makes one) takes the
            # messages, numbered from UID 1 at MODSEQ 1; INBOX stays, empty.
            dest = self._create(u, new_name)
            moved = [m for _, m in sorted(src.messages.items())]
            for uid, msg in enumerate(moved, 1):
                msg.uid, msg.modseq, msg.added_modseq = uid, 1, 1
                dest.messages[uid] = msg
            dest.uidnext = len(moved) + 1
            gone, src.messages = tuple(sorted(src.messages)), {}
            src.highestmodseq += 1
            # For INBOX's sessions (and VANISHED) the messages that left are expunged.
            src.expunged_log.extend((uid, src.highestmodseq) for uid in gone)
            self._publish(src, ChangeEvent(src.mailbox_id, src.highestmodseq, expunged=gone))
            return self._written_info(u, dest)  # (_create announced it on the account feed)
        old = src.name  # src is renamed inside the loop: its children need the old name's length
        for name in [n for n in u.mailboxes if n == old or n.startswith(old + "/")]:
            mbox = u.mailboxes.pop(name)
            mbox.name = new_name + name[len(old) :]
            u.mailboxes[mbox.name] = mbox
            if mbox.subscribed:  # like the store: subscriptions stay with names
                u.lone_subscriptions.add(name)
            mbox.subscribed = mbox.name in u.lone_subscriptions
            u.lone_subscriptions.discard(mbox.name)
            self._publish(mbox, ChangeEvent(mbox.mailbox_id, 0, name=mbox.name, old_name=name, renamed=True))
            mbox.watchers.clear()
        return self._written_info(u, src)

    async def subscribe(self, user: str, name: str, subscribed: bool) -> None:
        self._write()
        await trio.lowlevel.checkpoint()
        u = self._user(user)
        event = ChangeEvent(0, 0, user=u.name, name=_norm(name), subscribed=subscribed, unsubscribed=not subscribed)
        if _norm(name) not in u.mailboxes:
            if subscribed:
                u.lone_subscriptions.add(_norm(name))
                self._publish_account(event)
                return
            if _norm(name) in u.lone_subscriptions:
                u.lone_subscriptions.discard(_norm(name))
                self._publish_account(event)
                return
        self._mailbox(user, name).subscribed = subscribed
        self._publish_account(event)

    async def status(self, user: str, name: str) -> MailboxInfo:
        self._call()
        await trio.lowlevel.checkpoint()
        return self._info(self._user(user), self._mailbox(user, name))

    async def select(self, user: str, name: str) -> SelectResult:
        self._call()
        await trio.lowlevel.checkpoint()
        mbox = self._selectable(self._mailbox(user, name))
        keywords = sorted({f for m in mbox.messages.values() for f in m.flags if not f.startswith("\\")})
        uids = tuple(sorted(mbox.messages))
        unseen = next((u for u in uids if "\\Seen" not in mbox.messages[u].flags), 0)
        info = self._info(self._user(user), mbox)
        return SelectResult(info, uids, tuple(keywords), mbox.recent_boundary, unseen)

    # METADATA, with the store's rules and bounds (store/metadata.py)
    def _metadata_mailbox(self, user: str, mailbox: str) -> int:
        return self._mailbox(user, mailbox).mailbox_id if mailbox else 0

    async def get_metadata(
        self, user: str, mailbox: str, entries: Sequence[str], depth: int
    ) -> tuple[tuple[str, bytes], ...]:
        self._call()
        await trio.lowlevel.checkpoint()
        if len(entries) > _METADATA_MAX_ENTRIES:  # as the store: a bound per request
            raise StoreError(StoreErrorKind.INVALID, f"metadata: at most {_METADATA_MAX_ENTRIES} entries per request")
        mid = self._metadata_mailbox(user, mailbox)
        stored = self._user(user).metadata
        found: dict[str, tuple[str, bytes]] = {}
        for wanted in entries:
            key = _metadata_name(wanted, lookup=True)
            if (mid, key) in stored:
                found[key] = stored[mid, key]
            for (m, k), item in stored.items():
                rest = k[len(key) + 1 :]
                if m == mid and depth and k.startswith(key + "/") and (depth > 1 or "/" not in rest):
                    found[k] = item
        return tuple(found[k] for k in sorted(found))

    async def set_metadata(
        self, user: str, mailbox: str, entries: Sequence[tuple[str, bytes | None]]
    ) -> MetadataRefusal | None:
        self._write()
        await trio.lowlevel.checkpoint()
        mid = self._metadata_mailbox(user, mailbox)
        checked = [(_metadata_name(name), name, value) for name, value in entries]
        if any(value is not None and len(value) > _METADATA_MAX_VALUE for _, _, value in checked):
            return MetadataRefusal("MAXSIZE", _METADATA_MAX_VALUE)
        stored = self._user(user).metadata
        after = dict(stored)
        for key, name, value in checked:
            if value is None:
                after.pop((mid, key), None)
            else:
                after[mid, key] = (name, value)
        total = sum(len(n.encode()) + 1 + len(v) for n, v in after.values())
        if len(after) > len(stored) and (len(after) > _METADATA_MAX_ENTRIES or total > _METADATA_MAX_TOTAL):
            return MetadataRefusal("TOOMANY")
        stored.clear()
        stored.update(after)
        return None

    async def claim_recent(self, user: str, mailbox_id: int, up_to_uid: int) -> tuple[int, int]:
        self._write()
        await trio.lowlevel.checkpoint()
        mbox = self._by_id(user, mailbox_id)
        low, high = mbox.recent_boundary, min(up_to_uid, mbox.uidnext)
        if high <= low:
            return low, low
        mbox.recent_boundary = high
        return low, high

    async def fetch(self, user: str, mailbox_id: int, request: FetchRequest) -> AsyncGenerator[FetchedMessage, None]:
        self._call()
        self.fetch_requests.append(request)
        mbox = self._by_id(user, mailbox_id)
        for msg in self._selected(mbox, request.uid_set):
            if msg.modseq <= request.changed_since:
                continue
            await trio.lowlevel.checkpoint()
            yield FetchedMessage(
                msg.meta(request.with_header, request.with_facts), (msg.data,) if request.with_body else None
            )

    async def scan_index(self, user: str, mailbox_id: int, query: IndexQuery) -> AsyncGenerator[IndexColumns, None]:
        self._call()
        self.index_queries.append(query)
        mbox = self._by_id(user, mailbox_id)
        chosen = self._selected(mbox, query.uid_set)
        ids: dict[tuple[str, ...], int] = {}
        for msg in chosen:
            ids.setdefault(tuple(sorted(msg.flags)), len(ids) + 1)
        hits = []
        for at, needle in query.header_queries:
            texts = ((m.uid, indexed_text(m.meta(with_header=True).header or b"")) for m in chosen)
            hits.append(frozenset(uid for uid, text in texts if text_matches(text, at, needle)))
        found = []
        for text, body_only in query.text_queries:
            views = ((m.uid, MessageView(m.uid, 0, (), 0, 0, len(m.data), chunks=(m.data,))) for m in chosen)
            found.append(frozenset(uid for uid, view in views if _text_holds(ParsedMessage(view), text, body_only)))
        await trio.lowlevel.checkpoint()
        yield IndexColumns(
            uids=[m.uid for m in chosen],
            flag_ids=[ids[tuple(sorted(m.flags))] for m in chosen],
            modseqs=[m.modseq for m in chosen],
            sizes=[len(m.data) for m in chosen] if query.with_sizes_dates else [],
            dates=[m.internal_date for m in chosen] if query.with_sizes_dates else [],
            tz_offsets=[m.tz_offset_minutes for m in chosen] if query.with_sizes_dates else [],
            flag_sets={i: flags for flags, i in ids.items()},
            header_hits=tuple(hits),
            text_hits=tuple(found),
            sort_keys=[stored_keys(m.meta(with_header=True).header or b"") for m in chosen]
            if query.with_sort_keys
            else [],
        )

    async def store_flags(
        self,
        user: str,
        mailbox_id: int,
        uid_set: str,
        mode: FlagMode,
        flags: Sequence[str],
        *,
        unchanged_since: int | None = None,
    ) -> StoreFlagsResult:
        self._write()
        await trio.lowlevel.checkpoint()
        mbox = self._by_id(user, mailbox_id)
        wanted = _flags(flags)
        if mode is not FlagMode.REMOVE:
            _keyword_room(mbox, wanted)
        updated: list[MessageMeta] = []
        modified: list[int] = []
        modseq = mbox.highestmodseq + 1  # like the store: every message this command changes gets one MODSEQ
        for msg in self._selected(mbox, uid_set):
            if unchanged_since is not None and msg.modseq > unchanged_since:
                modified.append(msg.uid)
                continue
            if mode is FlagMode.REPLACE:
                new = set(wanted)
            elif mode is FlagMode.ADD:
                new = msg.flags | wanted
            else:
                new = msg.flags - wanted
            if new != msg.flags:
                mbox.highestmodseq = modseq
                msg.flags = new
                msg.modseq = modseq
                updated.append(msg.meta())
        if updated:
            self._publish(mbox, ChangeEvent(mailbox_id, mbox.highestmodseq, flags=tuple(updated)))
        return StoreFlagsResult(tuple(updated), tuple(modified), mbox.highestmodseq)

    async def _copy(self, user: str, mailbox_id: int, text: str, dest_name: str, move: bool) -> CopyResult:
        self._write()
        await trio.lowlevel.checkpoint()
        u = self._user(user)
        src = self._by_id(user, mailbox_id)
        dest = self._selectable(self._mailbox(user, dest_name))
        msgs = self._selected(src, text)
        _keyword_room(dest, {f for m in msgs for f in m.flags})
        size = sum(len(m.data) for m in msgs)
        if u.quota and not move and self._usage(u) + size > u.quota:
            raise StoreError(StoreErrorKind.OVER_QUOTA, "quota: over quota")
        # Like the store: the copies share one MODSEQ, and a MOVE moves usage (no quota check).
        added: list[_Message] = []
        modseq = dest.highestmodseq + 1
        for m in msgs:
            copied = _Message(
                dest.uidnext,
                modseq,
                set(m.flags),
                m.data,
                m.internal_date,
                m.tz_offset_minutes,
                int(time.time()),
                m.body_id,
            )
            dest.messages[copied.uid] = copied
            dest.uidnext += 1
            added.append(copied)
        if added:
            dest.highestmodseq = modseq
        if added:
            self._publish(dest, ChangeEvent(dest.mailbox_id, dest.highestmodseq, added=tuple(m.meta() for m in added)))
        expunged: tuple[int, ...] = ()
        if move and msgs:
            expunged = self._remove(src, [m.uid for m in msgs])
        return CopyResult(
            dest.uidvalidity,
            tuple(m.uid for m in msgs),
            tuple(m.uid for m in added),
            expunged,
            dest.mailbox_id,
            dest.highestmodseq,
            src.highestmodseq if move else 0,
        )

    def _remove(self, mbox: _Mailbox, uids: list[int]) -> tuple[int, ...]:
        mbox.highestmodseq += 1
        for uid in uids:
            del mbox.messages[uid]
            mbox.expunged_log.append((uid, mbox.highestmodseq))
        self._publish(mbox, ChangeEvent(mbox.mailbox_id, mbox.highestmodseq, expunged=tuple(uids)))
        return tuple(uids)

    async def copy(self, user: str, mailbox_id: int, uid_set: str, dest_mailbox: str) -> CopyResult:
        return await self._copy(user, mailbox_id, uid_set, dest_mailbox, move=False)

    async def move(self, user: str, mailbox_id: int, uid_set: str, dest_mailbox: str) -> CopyResult:
        return await self._copy(user, mailbox_id, uid_set, dest_mailbox, move=True)

    async def expunge(self, user: str, mailbox_id: int, uid_set: str = "") -> ExpungeResult:
        self._write()
        await trio.lowlevel.checkpoint()
        mbox = self._by_id(user, mailbox_id)
        msgs = self._selected(mbox, uid_set) if uid_set else list(mbox.messages.values())
        doomed = [m.uid for m in msgs if "\\Deleted" in m.flags]
        expunged = self._remove(mbox, doomed) if doomed else ()
        return ExpungeResult(expunged, mbox.highestmodseq)

    async def vanished(self, user: str, mailbox_id: int, since_modseq: int, uid_set: str = "") -> tuple[int, ...]:
        self._call()
        await trio.lowlevel.checkpoint()
        mbox = self._by_id(user, mailbox_id)
        try:
            ranges = uidset.parse(uid_set).resolve(mbox.uidnext - 1) if uid_set else None
        except InvalidArgument as exc:
            raise StoreError(StoreErrorKind.INVALID, str(exc)) from None
        return tuple(
            sorted(
                uid
                for uid, ms in mbox.expunged_log
                if ms > since_modseq and (ranges is None or uidset.contains(ranges, uid))
            )
        )

    async def append(
        self,
        user: str,
        mailbox: str,
        spec: AppendSpec,
        size: int,
        chunks: bytes | AsyncIterable[bytes],
        *,
        claim_recent: bool = False,
    ) -> AppendResult:
        data = chunks if isinstance(chunks, bytes) else b"".join([chunk async for chunk in chunks])
        result = await self.multi_append(user, mailbox, [(spec, data)])
        if not claim_recent:
            return result
        # As the store: the claim commits with the append (no await in between).
        mbox = self._by_id(user, result.mailbox_id)
        low, high = mbox.recent_boundary, min(result.uids[0] + 1, mbox.uidnext)
        if high > low:
            mbox.recent_boundary = high
        return dataclasses.replace(result, recent=(low, max(low, high)))

    async def multi_append(self, user: str, mailbox: str, messages: Sequence[tuple[AppendSpec, bytes]]) -> AppendResult:
        self._write()
        await trio.lowlevel.checkpoint()
        u = self._user(user)
        mbox = self._selectable(self._mailbox(user, mailbox))
        messages = [
            (dataclasses.replace(spec, flags=tuple(sorted(_flags(spec.flags)))), data) for spec, data in messages
        ]
        _keyword_room(mbox, {f for spec, _ in messages for f in spec.flags})
        total = sum(len(data) for _, data in messages)
        if u.quota and self._usage(u) + total > u.quota:
            raise StoreError(StoreErrorKind.OVER_QUOTA, "quota: over quota")
        for _, data in messages:
            if len(data) > self.max_message_size:
                raise StoreError(StoreErrorKind.TOO_BIG, f"size: {len(data)} > {self.max_message_size}")
        added = [self._add(u, mbox, spec, data) for spec, data in messages]
        self._publish(mbox, ChangeEvent(mbox.mailbox_id, mbox.highestmodseq, added=tuple(m.meta() for m in added)))
        return AppendResult(mbox.uidvalidity, tuple(m.uid for m in added), mbox.mailbox_id)

    async def get_quota(self, user: str) -> QuotaInfo:
        self._call()
        await trio.lowlevel.checkpoint()
        u = self._user(user)
        count = sum(len(mb.messages) for mb in u.mailboxes.values())
        return QuotaInfo(u.name, self._usage(u), u.quota, count)

    def report_own_writes(self, listener: OwnWrites) -> None:
        """The fake sends every event on the feeds (the contract allows it)."""

    async def watch(self, user: str, mailbox_id: int, since_modseq: int) -> AsyncGenerator[ChangeEvent, None]:
        self._call()
        mbox = self._by_id(user, mailbox_id)
        send, receive = trio.open_memory_channel[ChangeEvent](10_000)
        if since_modseq:
            # Like the store (messages.changes_since): one event describing everything after
            # since_modseq, not a replay of the events that happened.
            send.send_nowait(
                ChangeEvent(
                    mailbox_id,
                    mbox.highestmodseq,
                    added=tuple(m.meta() for _, m in sorted(mbox.messages.items()) if m.added_modseq > since_modseq),
                    flags=tuple(
                        m.meta() for _, m in sorted(mbox.messages.items()) if m.added_modseq <= since_modseq < m.modseq
                    ),
                    expunged=tuple(sorted(uid for uid, ms in mbox.expunged_log if ms > since_modseq)),
                )
            )
        mbox.watchers.append(send)
        async with receive:
            async for event in receive:
                yield event
                if event.deleted or event.renamed:
                    return

    async def watch_account(self, user: str) -> AsyncGenerator[ChangeEvent, None]:
        self._call()
        u = self._user(user)
        send, receive = trio.open_memory_channel[ChangeEvent](1000)
        self._account_watchers.setdefault(u.name, []).append(send)
        try:
            async with receive:
                async for event in receive:
                    yield event
        finally:
            watchers = self._account_watchers.get(u.name, [])
            if send in watchers:
                watchers.remove(send)

    def forget_mailbox(self, mailbox_id: int) -> int:
        return 0  # the fake caches nothing per mailbox: SELECT reads its own dicts each time

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
