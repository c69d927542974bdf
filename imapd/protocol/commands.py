"""Typed IMAP commands: one frozen dataclass per command.

The parser yields `CommandReceived(tag, command)` with one of these; the tag
is carried by the event, not the command. UID variants are the same classes
with `uid=True`. Mailbox names are already decoded from modified UTF-7.
Secrets (passwords, SASL responses) are excluded from repr so a command can
never leak one into a log line.

APPEND normally arrives as a stream of events (see parser.py); the `Append`
class is what the parser yields when streaming is switched off.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass, field

from imapd.protocol.fetch_spec import FetchAttribute
from imapd.protocol.search_spec import SearchProgram
from imapd.protocol.sequence import SequenceSet
from mailparse.sort_spec import SortCriterion, ThreadAlgorithm

# --- any state -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capability:
    pass


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Logout:
    pass


@dataclass(frozen=True, slots=True)
class Id:
    """ID (RFC 2971): None for NIL, else field/value pairs (value None for NIL)."""

    parameters: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True, slots=True)
class Compress:
    """COMPRESS mechanism (RFC 4978); only DEFLATE is defined."""

    mechanism: str


# --- not authenticated -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartTls:
    pass


@dataclass(frozen=True, slots=True)
class Authenticate:
    """AUTHENTICATE mech [initial-response] (SASL-IR, RFC 4959).

    `initial_response` is the decoded base64: None when absent, b"" for "=".
    """

    mechanism: str
    initial_response: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Login:
    userid: str
    password: str = field(repr=False)


# --- authenticated -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QResyncParams:
    """SELECT ... (QRESYNC (uidvalidity modseq [known-uids [(seq-match uid-match)]]))."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    known_sequence: SequenceSet | None = None
    known_sequence_uids: SequenceSet | None = None


@dataclass(frozen=True, slots=True)
class Select:
    """SELECT, or EXAMINE when `read_only`; CONDSTORE/QRESYNC select parameters (RFC 7162)."""

    mailbox: str
    read_only: bool = False
    condstore: bool = False
    qresync: QResyncParams | None = None


@dataclass(frozen=True, slots=True)
class Create:
    mailbox: str
    special_use: tuple[str, ...] = ()  # CREATE ... (USE (\Drafts)) (RFC 6154)


@dataclass(frozen=True, slots=True)
class Delete:
    mailbox: str


@dataclass(frozen=True, slots=True)
class Rename:
    mailbox: str
    new_name: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    mailbox: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    mailbox: str


class StatusItem(enum.Enum):
    MESSAGES = "MESSAGES"
    RECENT = "RECENT"
    UIDNEXT = "UIDNEXT"
    UIDVALIDITY = "UIDVALIDITY"
    UNSEEN = "UNSEEN"
    HIGHESTMODSEQ = "HIGHESTMODSEQ"  # RFC 7162
    SIZE = "SIZE"  # RFC 8438
    DELETED = "DELETED"  # RFC 9051
    MAILBOXID = "MAILBOXID"  # RFC 8474


class ListSelection(enum.Enum):
    """LIST-EXTENDED selection options (RFC 5258, RFC 6154)."""

    SUBSCRIBED = "SUBSCRIBED"
    REMOTE = "REMOTE"
    RECURSIVEMATCH = "RECURSIVEMATCH"
    SPECIAL_USE = "SPECIAL-USE"


class ListReturn(enum.Enum):
    """LIST-EXTENDED return options other than STATUS (RFC 5258, 5819, 6154)."""

    SUBSCRIBED = "SUBSCRIBED"
    CHILDREN = "CHILDREN"
    SPECIAL_USE = "SPECIAL-USE"


@dataclass(frozen=True, slots=True)
class List:
    """LIST [(selection)] reference (pattern | (patterns)) [RETURN (options)].

    `extended` is true when any LIST-EXTENDED syntax was used (the response
    then may carry extended data); `status` holds RETURN (STATUS (...)) items.
    """

    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[ListSelection] = frozenset()
    returns: frozenset[ListReturn] = frozenset()
    status: tuple[StatusItem, ...] | None = None
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Lsub:
    reference: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Status:
    mailbox: str
    items: tuple[StatusItem, ...]


@dataclass(frozen=True, slots=True)
class CatenateText:
    """TEXT literal of a CATENATE (RFC 4469)."""

    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class CatenateUrl:
    """URL of a CATENATE (RFC 4469): an IMAP URL (RFC 5092), resolved by the session."""

    url: str


CatenatePart = CatenateText | CatenateUrl


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of an APPEND: flags, optional INTERNALDATE, and its bytes (or the
    CATENATE parts that make them, `data` then empty)."""

    flags: tuple[str, ...]
    internal_date: datetime.datetime | None
    data: bytes = field(repr=False)
    binary: bool = False  # sent as literal8 ~{n} (RFC 3516)
    catenate: tuple[CatenatePart, ...] = ()


@dataclass(frozen=True, slots=True)
class Append:
    """APPEND / MULTIAPPEND (RFC 3502), when the parser buffers instead of streaming."""

    mailbox: str
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True, slots=True)
class Idle:
    pass


class NotifyFilter(enum.Enum):
    """filter-mailboxes of RFC 5465 section 6."""

    SELECTED = "SELECTED"
    SELECTED_DELAYED = "SELECTED-DELAYED"
    INBOXES = "INBOXES"
    PERSONAL = "PERSONAL"
    SUBSCRIBED = "SUBSCRIBED"
    SUBTREE = "SUBTREE"
    MAILBOXES = "MAILBOXES"


@dataclass(frozen=True, slots=True)
class NotifyGroup:
    """One event-group: which mailboxes, which events (upper-cased names, () for NONE)."""

    filter: NotifyFilter
    mailboxes: tuple[str, ...]  # SUBTREE / MAILBOXES only
    events: tuple[str, ...]
    fetch: tuple[FetchAttribute, ...] = ()  # MessageNew's fetch-att (selected mailbox)


@dataclass(frozen=True, slots=True)
class Notify:
    """NOTIFY SET [STATUS] groups (RFC 5465), or NOTIFY NONE (`groups` None)."""

    groups: tuple[NotifyGroup, ...] | None
    status: bool = False


@dataclass(frozen=True, slots=True)
class Namespace:
    pass


@dataclass(frozen=True, slots=True)
class Enable:
    capabilities: tuple[str, ...]  # upper-cased


@dataclass(frozen=True, slots=True)
class GetQuota:
    root: str


@dataclass(frozen=True, slots=True)
class GetQuotaRoot:
    mailbox: str


@dataclass(frozen=True, slots=True)
class SetQuota:
    root: str
    limits: tuple[tuple[str, int], ...]  # (resource name upper-cased, limit)


# --- selected ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetMetadata:
    """GETMETADATA (RFC 5464 4.2); mailbox "" names the server."""

    mailbox: str
    entries: tuple[str, ...]
    max_size: int | None = None
    depth: int = 0  # 0, 1, or METADATA_DEPTH_INFINITY


METADATA_DEPTH_INFINITY = 2


@dataclass(frozen=True, slots=True)
class SetMetadata:
    """SETMETADATA (RFC 5464 4.3): (entry, value or None to remove) pairs."""

    mailbox: str
    entries: tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True, slots=True)
class Check:
    pass


@dataclass(frozen=True, slots=True)
class Close:
    pass


@dataclass(frozen=True, slots=True)
class Unselect:
    pass


@dataclass(frozen=True, slots=True)
class Expunge:
    """EXPUNGE, or UID EXPUNGE uid-set (UIDPLUS) when `uids` is set."""

    uids: SequenceSet | None = None


class SearchReturn(enum.Enum):
    """ESEARCH RETURN options (RFC 4731), SAVE (RFC 5182), CONTEXT/UPDATE/PARTIAL (RFC 5267).

    PARTIAL's range travels in the command's `partial` field.
    """

    MIN = "MIN"
    MAX = "MAX"
    COUNT = "COUNT"
    ALL = "ALL"
    SAVE = "SAVE"
    CONTEXT = "CONTEXT"  # a hint only (RFC 5267 4.2)
    UPDATE = "UPDATE"  # keep the result and report ADDTO/REMOVEFROM (RFC 5267 4.3)
    PARTIAL = "PARTIAL"  # the results lo..hi of the result list (RFC 5267 4.4)


@dataclass(frozen=True, slots=True)
class Search:
    """[UID] SEARCH [RETURN (opts)] [CHARSET c] keys.

    `returns` is None for a classic SEARCH (untagged SEARCH response) and a
    set for ESEARCH; RETURN () means ALL and is given as {ALL}.
    """

    program: SearchProgram
    uid: bool = False
    returns: frozenset[SearchReturn] | None = None
    partial: tuple[int, int] | None = None  # RETURN (PARTIAL lo:hi), 1-based, lo <= hi
    charset_given: bool = False  # CHARSET x was written (refused once UTF8=ACCEPT is on, RFC 6855 3)


@dataclass(frozen=True, slots=True)
class Sort:
    """[UID] SORT [RETURN (opts)] (criteria) charset keys (RFC 5256, ESORT RFC 5267).

    `criteria` are (criterion, reverse) pairs, most significant first;
    `returns` as for Search (None: the untagged SORT response).
    """

    criteria: tuple[tuple[SortCriterion, bool], ...]
    program: SearchProgram
    uid: bool = False
    returns: frozenset[SearchReturn] | None = None
    partial: tuple[int, int] | None = None  # as for Search, in sort order


@dataclass(frozen=True, slots=True)
class CancelUpdate:
    """CANCELUPDATE "tag" ... (RFC 5267 4.3.5): stop the updates of these searching commands."""

    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Thread:
    """[UID] THREAD algorithm charset keys (RFC 5256)."""

    algorithm: ThreadAlgorithm
    program: SearchProgram
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Fetch:
    """[UID] FETCH set attrs [(CHANGEDSINCE n [VANISHED])].

    `attributes` is as the client asked (macros expanded); the session adds
    UID for UID FETCH and MODSEQ for CHANGEDSINCE (fetch_spec.with_uid/with_modseq).
    """

    sequence_set: SequenceSet
    attributes: tuple[FetchAttribute, ...]
    uid: bool = False
    changed_since: int | None = None
    vanished: bool = False


class StoreMode(enum.Enum):
    REPLACE = ""
    ADD = "+"
    REMOVE = "-"


@dataclass(frozen=True, slots=True)
class Store:
    """[UID] STORE set [(UNCHANGEDSINCE n)] [+-]FLAGS[.SILENT] (flags)."""

    sequence_set: SequenceSet
    mode: StoreMode
    flags: tuple[str, ...]
    silent: bool = False
    uid: bool = False
    unchanged_since: int | None = None


@dataclass(frozen=True, slots=True)
class Copy:
    sequence_set: SequenceSet
    mailbox: str
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Move:
    """MOVE (RFC 6851)."""

    sequence_set: SequenceSet
    mailbox: str
    uid: bool = False


Command = (
    Capability
    | Noop
    | Logout
    | Id
    | Compress
    | StartTls
    | Authenticate
    | Login
    | Select
    | Create
    | Delete
    | Rename
    | Subscribe
    | Unsubscribe
    | List
    | Lsub
    | Status
    | Append
    | Idle
    | Notify
    | Namespace
    | Enable
    | GetQuota
    | GetQuotaRoot
    | SetQuota
    | GetMetadata
    | SetMetadata
    | Check
    | Close
    | Unselect
    | Expunge
    | Search
    | Sort
    | CancelUpdate
    | Thread
    | Fetch
    | Store
    | Copy
    | Move
)
