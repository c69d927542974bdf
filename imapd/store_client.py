"""The store-client interface: the ONLY way imapd reaches mail.

Two implementations: `imapd.store_fake.FakeStore` (in memory, for fast tests)
and `imapd.store_grpc.GrpcStore` (the real store over gRPC). Every method is
one store round trip, so an IMAP command costs one call whatever the number of
messages it touches. Writes carry the writer epoch the client was built with;
the client never refreshes it (a deposed writer must stay fenced).

Failures raise `imapd.errors.StoreError`.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator, AsyncIterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    messages: int
    unseen: int
    uidnext: int
    uidvalidity: int
    highestmodseq: int
    size: int
    deleted: int
    recent: int = 0


@dataclass(frozen=True, slots=True)
class MailboxInfo:
    name: str
    mailbox_id: int
    special_use: str
    subscribed: bool
    has_children: bool
    status: MailboxStatus | None = None
    noselect: bool = False
    nonexistent: bool = False  # a subscription without a mailbox (list_mailboxes only)


@dataclass(frozen=True, slots=True)
class SelectResult:
    mailbox: MailboxInfo
    uids: Sequence[int]  # ascending (GrpcStore: an array, from the packed reply)
    keywords: tuple[str, ...]  # keywords in use in this mailbox
    recent_boundary: int = 1  # UIDs >= this are \Recent, not claimed by any session yet
    first_unseen_uid: int = 0  # 0: every message is \Seen


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What FetchRequest.with_facts adds: SAVEDATE, EMAILID, PREVIEW."""

    save_date: int  # unix seconds the message was saved into its mailbox
    body_id: int  # shared by copies (COPY/MOVE): the EMAILID
    preview: str | None  # None: the store has none for this message


# MessageMeta and FetchedMessage are made per message of every FETCH and SEARCH: named
# tuples (immutable, built in C) instead of frozen dataclasses, whose __init__ sets each
# field through object.__setattr__ (a sixth of a FETCH's CPU, issue 13).
class MessageMeta(NamedTuple):
    uid: int
    modseq: int
    flags: tuple[str, ...]
    internal_date: int = 0  # unix seconds
    tz_offset_minutes: int = 0
    size: int = 0
    header: bytes | None = None  # header block incl. the blank line, when asked
    facts: MessageFacts | None = None  # when asked (with_facts)


class FetchedMessage(NamedTuple):
    meta: MessageMeta
    # Whole message (or the asked byte range) when asked, else None: in the pieces the
    # store read or sent it in (one for a small message), never joined on the way; where
    # they split is the reader's business (`joined` gives the bytes).
    body: tuple[bytes, ...] | None

    @property
    def joined(self) -> bytes | None:
        body = self.body
        if body is None:
            return None
        return body[0] if len(body) == 1 else b"".join(body)


@dataclass(frozen=True, slots=True)
class FetchRequest:
    uid_set: str
    with_header: bool = False
    with_body: bool = False
    changed_since: int = 0
    with_facts: bool = False  # MessageMeta.facts


@dataclass(frozen=True, slots=True)
class IndexQuery:
    """A scan of the store's flag index (and header index: `header_queries`)."""

    uid_set: str
    with_sizes_dates: bool = False
    # (field position in search_fields.INDEXED_FIELDS, casefolded UTF-8 needle)
    header_queries: tuple[tuple[int, bytes], ...] = ()
    # (casefolded needle, body only): SEARCH TEXT / BODY from the store's full-text index
    text_queries: tuple[tuple[str, bool], ...] = ()
    # the stored SORT/THREAD keys of each message (mailparse.sort_keys.stored_keys form)
    with_sort_keys: bool = False
    # When either is set, the columns may hold only the messages with every flag of
    # `with_flags` and none of `without_flags` (casefolded): an optimisation the caller
    # may not rely on (the fake returns everything), so the keys are evaluated again.
    with_flags: tuple[str, ...] = ()
    without_flags: tuple[str, ...] = ()
    # False: the caller needs no MODSEQs; the columns may then leave them out (and a flag
    # filter is answered from the store's UID lists per flag set, at the cost of the answer).
    with_modseqs: bool = True


@dataclass(frozen=True, slots=True)
class IndexColumns:
    """One chunk of a scan: parallel columns in ascending UID order."""

    uids: Sequence[int]
    flag_ids: Sequence[int]
    modseqs: Sequence[int]  # may be empty when the query was without MODSEQs
    sizes: Sequence[int] = ()  # with_sizes_dates only
    dates: Sequence[int] = ()
    tz_offsets: Sequence[int] = ()
    flag_sets: Mapping[int, tuple[str, ...]] = field(default_factory=dict)  # ids first seen in this chunk
    header_hits: tuple[frozenset[int], ...] = ()  # first chunk: one UID set per header query
    text_hits: tuple[frozenset[int], ...] = ()  # first chunk: one UID set per text query
    sort_keys: Sequence[bytes] = ()  # with_sort_keys: per message, b"" where the store has none


class FlagMode(enum.Enum):
    REPLACE = 0
    ADD = 1
    REMOVE = 2


@dataclass(frozen=True, slots=True)
class StoreFlagsResult:
    updated: tuple[MessageMeta, ...]
    modified: tuple[int, ...]  # UIDs that failed UNCHANGEDSINCE
    highestmodseq: int


@dataclass(frozen=True, slots=True)
class CopyResult:
    dest_uidvalidity: int
    source_uids: tuple[int, ...]
    dest_uids: tuple[int, ...]
    expunged: tuple[int, ...]  # MOVE: source UIDs removed
    dest_mailbox_id: int = 0
    dest_modseq: int = 0
    source_modseq: int = 0  # MOVE: source HIGHESTMODSEQ after the removal


@dataclass(frozen=True, slots=True)
class ExpungeResult:
    expunged: tuple[int, ...]
    highestmodseq: int


@dataclass(frozen=True, slots=True)
class AppendSpec:
    flags: tuple[str, ...] = ()
    internal_date: int = 0  # 0 = now
    tz_offset_minutes: int = 0


@dataclass(frozen=True, slots=True)
class AppendResult:
    uidvalidity: int
    uids: tuple[int, ...]
    mailbox_id: int
    # With append(claim_recent=True): the \Recent range [from, to) the store claimed in the
    # append's own commit; None when it did not (the caller claims separately).
    recent: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class QuotaInfo:
    user: str
    usage_bytes: int
    limit_bytes: int  # 0 = unlimited
    messages: int


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    mailbox_id: int
    modseq: int
    added: tuple[MessageMeta, ...] = ()
    expunged: tuple[int, ...] = ()
    flags: tuple[MessageMeta, ...] = ()
    deleted: bool = False
    renamed: bool = False
    heartbeat: bool = False
    # Account-level events (`watch_account`): the owner, mailbox names and what happened to them.
    user: str = ""
    created: bool = False
    name: str = ""  # created/deleted/renamed/subscription: the mailbox name (after a rename)
    old_name: str = ""  # renamed: the name before
    subscribed: bool = False
    unsubscribed: bool = False
    # An event of our own write (from its reply): the mailbox's modseq before this change.
    after_modseq: int = 0


class OwnWrites(Protocol):
    """Takes the change events of this process's own writes from their replies
    (`StoreClient.report_own_writes`); called in the caller's trio thread."""

    def write_started(self, user: str) -> int:
        """A write of `user`'s is going out; returns a ticket for `write_ended`."""
        ...

    def write_ended(self, ticket: int, events: Sequence[ChangeEvent], *, certain: bool) -> None:
        """The write's events (none if it failed); `certain` is False when the store's
        answer was lost (the write may have committed, its events unknown)."""
        ...


@dataclass(frozen=True, slots=True)
class MetadataRefusal:
    """Why SETMETADATA wrote nothing (RFC 5464 4.3): "MAXSIZE" (a value over max_size) or "TOOMANY"."""

    kind: str
    max_size: int = 0


class StoreClient(Protocol):
    async def authenticate(self, name: str, password: str) -> str:
        """Return the canonical user name; StoreError(UNAUTHENTICATED) if wrong."""
        ...

    async def list_mailboxes(
        self, user: str, *, with_status: bool = False, subscribed_only: bool = False
    ) -> Sequence[MailboxInfo]: ...

    async def create_mailbox(self, user: str, name: str, special_use: str = "") -> MailboxInfo: ...

    async def delete_mailbox(self, user: str, name: str) -> None: ...

    async def rename_mailbox(self, user: str, old_name: str, new_name: str) -> MailboxInfo: ...

    async def subscribe(self, user: str, name: str, subscribed: bool) -> None: ...

    async def status(self, user: str, name: str) -> MailboxInfo: ...

    async def select(self, user: str, name: str) -> SelectResult: ...

    def fetch(self, user: str, mailbox_id: int, request: FetchRequest) -> AsyncGenerator[FetchedMessage, None]:
        """Messages of a UID set in ascending UID order, one streaming call."""
        ...

    def scan_index(self, user: str, mailbox_id: int, query: IndexQuery) -> AsyncGenerator[IndexColumns, None]:
        """UIDs, flags, MODSEQs (sizes, dates) of a UID set from the store's indexes, in chunks;
        at least one chunk (the first carries the header query answers). One streaming call."""
        ...

    async def store_flags(
        self,
        user: str,
        mailbox_id: int,
        uid_set: str,
        mode: FlagMode,
        flags: Sequence[str],
        *,
        unchanged_since: int | None = None,
    ) -> StoreFlagsResult: ...

    async def copy(self, user: str, mailbox_id: int, uid_set: str, dest_mailbox: str) -> CopyResult: ...

    async def move(self, user: str, mailbox_id: int, uid_set: str, dest_mailbox: str) -> CopyResult: ...

    async def expunge(self, user: str, mailbox_id: int, uid_set: str = "") -> ExpungeResult: ...

    async def vanished(self, user: str, mailbox_id: int, since_modseq: int, uid_set: str = "") -> tuple[int, ...]: ...

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
        """One message of `size` bytes: whole, or streamed to the store as they arrive.

        `claim_recent`: the caller has the mailbox selected read-write; the store may claim
        the new message's \\Recent in the same commit (as `claim_recent(.., uid + 1)`) and
        say so in `AppendResult.recent`."""
        ...

    async def multi_append(self, user: str, mailbox: str, messages: Sequence[tuple[AppendSpec, bytes]]) -> AppendResult:
        """Several messages, all or nothing (MULTIAPPEND)."""
        ...

    async def get_quota(self, user: str) -> QuotaInfo: ...

    async def get_metadata(
        self, user: str, mailbox: str, entries: Sequence[str], depth: int
    ) -> tuple[tuple[str, bytes], ...]:
        """(entry, value) of the annotations asked (and below, with depth); mailbox "" = server."""
        ...

    async def set_metadata(
        self, user: str, mailbox: str, entries: Sequence[tuple[str, bytes | None]]
    ) -> MetadataRefusal | None:
        """Set (value) or remove (None) annotations, all or nothing; the refusal when a bound is passed."""
        ...

    async def claim_recent(self, user: str, mailbox_id: int, up_to_uid: int) -> tuple[int, int]:
        """Claim the \\Recent UIDs below `up_to_uid` not claimed yet; returns [from, to)."""
        ...

    def report_own_writes(self, listener: OwnWrites) -> None:
        """From now on, hand the events of this client's writes to `listener` from their
        replies, and have the store leave them off this client's `watch` feeds (not
        `watch_account`). A client or store that cannot keeps sending them on the feeds,
        so the listener must take an event from either. A later call replaces the listener."""
        ...

    def watch(self, user: str, mailbox_id: int, since_modseq: int) -> AsyncGenerator[ChangeEvent, None]:
        """Change feed of one mailbox after `since_modseq` (0 = from now).

        Ends after a `deleted` or `renamed` event. imapd keeps one per mailbox
        and process (see `imapd.watch_hub`)."""
        ...

    def watch_account(self, user: str) -> AsyncGenerator[ChangeEvent, None]:
        """Change feed of a whole account from now: every mailbox's events plus mailbox
        create/delete/rename and (un)subscriptions. imapd keeps one per user and process
        (see `imapd.account_hub`), for NOTIFY."""
        ...

    def forget_mailbox(self, mailbox_id: int) -> int:
        """No session of this process has the mailbox selected any more: drop what the
        client caches of it (beside the store, the UID list SELECT reads); returns the
        bytes let go (0: nothing cached). Issue 17: an idle imapd returns to its idle size."""
        ...

    async def aclose(self) -> None: ...
