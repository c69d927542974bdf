"""Typed SEARCH key tree (RFC 3501 section 6.4.4, CONDSTORE MODSEQ of RFC 7162).

The parser builds a `SearchProgram`; the evaluator in imapd.message walks the
tree per message. Keys that are shorthands on the wire (NEW, OLD, FROM,
UNSEEN, ...) become the general keys below through `simple_key` and
`address_key`, so the evaluator knows only a few node types. `needs` tells the
session whether a search must fetch the header block or the whole message.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, Protocol

from imapd.protocol.fetch_spec import DataNeeds


class SequenceMatcher(Protocol):
    """What a search needs of a sequence set (imap-core's SequenceSet provides it).

    `largest` is the value of "*": the highest sequence number or UID of the
    mailbox (RFC 3501: "*" is the largest number in use).
    """

    def contains(self, value: int, largest: int) -> bool: ...


class DateField(enum.Enum):
    INTERNAL = "internal"  # BEFORE / ON / SINCE
    SENT = "sent"  # SENTBEFORE / SENTON / SENTSINCE, on the Date: header
    SAVED = "saved"  # SAVEDBEFORE / SAVEDON / SAVEDSINCE (RFC 8514), the save date in UTC


class DateRelation(enum.Enum):
    BEFORE = "BEFORE"
    ON = "ON"
    SINCE = "SINCE"


class SizeRelation(enum.Enum):
    LARGER = "LARGER"
    SMALLER = "SMALLER"


@dataclass(frozen=True, slots=True)
class AllKey:
    pass


@dataclass(frozen=True, slots=True)
class FlagKey:
    """A system flag (\\Seen, \\Recent, ...) or keyword, present or absent."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class HeaderKey:
    """Substring of a header field value (case-insensitive, decoded); "" = field present."""

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class BodyKey:
    """Substring of the decoded body text."""

    value: str


@dataclass(frozen=True, slots=True)
class TextKey:
    """Substring of the decoded header or body."""

    value: str


@dataclass(frozen=True, slots=True)
class DateKey:
    field: DateField
    relation: DateRelation
    date: datetime.date


class AgeRelation(enum.Enum):
    """WITHIN (RFC 5032), on the internal date."""

    YOUNGER = "YOUNGER"  # arrived at most `seconds` ago
    OLDER = "OLDER"  # arrived at least `seconds` ago


@dataclass(frozen=True, slots=True)
class AgeKey:
    relation: AgeRelation
    seconds: int


@dataclass(frozen=True, slots=True)
class SizeKey:
    relation: SizeRelation
    size: int


@dataclass(frozen=True, slots=True)
class SequenceKey:
    """A sequence set (uid=False) or UID set (uid=True)."""

    matcher: SequenceMatcher
    uid: bool = False


@dataclass(frozen=True, slots=True)
class ModSeqKey:
    """MODSEQ [entry-name entry-type] n: messages with modseq >= n.

    The entry (per-flag modseq) is accepted and ignored: we keep one modseq per message.
    """

    modseq: int
    entry_name: str | None = None
    entry_type: str | None = None


@dataclass(frozen=True, slots=True)
class NotKey:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class OrKey:
    left: SearchKey
    right: SearchKey


class ObjectIdKind(enum.Enum):
    EMAILID = "EMAILID"
    THREADID = "THREADID"


@dataclass(frozen=True, slots=True)
class ObjectIdKey:
    """SEARCH EMAILID x / THREADID x (RFC 8474 6)."""

    kind: ObjectIdKind
    value: str


@dataclass(frozen=True, slots=True)
class AndKey:
    """A parenthesised list, and the implicit AND of the top-level keys."""

    keys: tuple[SearchKey, ...]


SearchKey = (
    AllKey
    | FlagKey
    | HeaderKey
    | BodyKey
    | TextKey
    | DateKey
    | AgeKey
    | SizeKey
    | SequenceKey
    | ModSeqKey
    | ObjectIdKey
    | NotKey
    | OrKey
    | AndKey
)

SUPPORTED_CHARSETS: Final = ("UTF-8", "US-ASCII")


@dataclass(frozen=True, slots=True)
class SearchProgram:
    """SEARCH [CHARSET c] keys: strings in the keys are already decoded to str."""

    key: SearchKey
    charset: str = "US-ASCII"
    # Facts of the key tree, found once (a program is parsed once per distinct command line
    # and asked several times per SEARCH: walking the tree each time showed in profiles).
    needs: DataNeeds = field(init=False, repr=False, compare=False)
    uses_modseq: bool = field(init=False, repr=False, compare=False)  # answers with (MODSEQ n), RFC 7162 3.1.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "needs", search_needs(self.key))
        object.__setattr__(self, "uses_modseq", any(isinstance(k, ModSeqKey) for k in walk(self.key)))


class UnsupportedCharset(ValueError):
    """Maps to NO [BADCHARSET (UTF-8 US-ASCII)].

    `saving`: the command asked RETURN (SAVE); its NO empties the saved result (RFC 5182 2.1).
    """

    def __init__(self, charset: str, *, saving: bool = False) -> None:
        super().__init__(charset)
        self.saving = saving


def decode_search_string(raw: bytes, charset: str) -> str:
    """Decode a search string sent under CHARSET `charset`.

    US-ASCII is decoded as UTF-8 too: clients send 8-bit bytes without a
    CHARSET and UTF-8 is the only sensible reading.
    """
    name = charset.upper()
    if name not in SUPPORTED_CHARSETS:
        raise UnsupportedCharset(charset)
    return raw.decode("utf-8", "replace")


# Wire keys without arguments, mapped to the general tree.
_SEEN: Final = "\\Seen"
_RECENT: Final = "\\Recent"
SIMPLE_KEYS: Final[dict[str, SearchKey]] = {
    "ALL": AllKey(),
    # RFC 8514: every mailbox here keeps save dates, so this matches every message.
    "SAVEDATESUPPORTED": AllKey(),
    "ANSWERED": FlagKey("\\Answered"),
    "DELETED": FlagKey("\\Deleted"),
    "DRAFT": FlagKey("\\Draft"),
    "FLAGGED": FlagKey("\\Flagged"),
    "RECENT": FlagKey(_RECENT),
    "SEEN": FlagKey(_SEEN),
    "UNANSWERED": FlagKey("\\Answered", present=False),
    "UNDELETED": FlagKey("\\Deleted", present=False),
    "UNDRAFT": FlagKey("\\Draft", present=False),
    "UNFLAGGED": FlagKey("\\Flagged", present=False),
    "UNSEEN": FlagKey(_SEEN, present=False),
    "NEW": AndKey((FlagKey(_RECENT), FlagKey(_SEEN, present=False))),
    "OLD": FlagKey(_RECENT, present=False),
}

# Wire keys taking one string, searched in the header field of the same name.
ADDRESS_KEYS: Final[dict[str, str]] = {"BCC": "Bcc", "CC": "Cc", "FROM": "From", "SUBJECT": "Subject", "TO": "To"}

DATE_KEYS: Final[dict[str, tuple[DateField, DateRelation]]] = {
    "BEFORE": (DateField.INTERNAL, DateRelation.BEFORE),
    "ON": (DateField.INTERNAL, DateRelation.ON),
    "SINCE": (DateField.INTERNAL, DateRelation.SINCE),
    "SENTBEFORE": (DateField.SENT, DateRelation.BEFORE),
    "SENTON": (DateField.SENT, DateRelation.ON),
    "SENTSINCE": (DateField.SENT, DateRelation.SINCE),
    "SAVEDBEFORE": (DateField.SAVED, DateRelation.BEFORE),
    "SAVEDON": (DateField.SAVED, DateRelation.ON),
    "SAVEDSINCE": (DateField.SAVED, DateRelation.SINCE),
}


def simple_key(name: str) -> SearchKey | None:
    """The key for an argument-less wire key (any case), None if not one."""
    return SIMPLE_KEYS.get(name.upper())


def keyword_key(keyword: str, present: bool = True) -> FlagKey:
    """KEYWORD x / UNKEYWORD x."""
    return FlagKey(keyword, present)


def walk(key: SearchKey) -> Iterator[SearchKey]:
    """Every node of the tree, depth first."""
    stack: list[SearchKey] = [key]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, NotKey):
            stack.append(node.key)
        elif isinstance(node, OrKey):
            stack.extend((node.right, node.left))
        elif isinstance(node, AndKey):
            stack.extend(reversed(node.keys))


def search_needs(key: SearchKey) -> DataNeeds:
    """Header block for HEADER-like and SENT* keys, full message for BODY/TEXT, facts for SAVED*."""
    header = body = facts = False
    for node in walk(key):
        if isinstance(node, HeaderKey) or (isinstance(node, DateKey) and node.field is DateField.SENT):
            header = True
        elif isinstance(node, BodyKey | TextKey):
            body = True
        elif (isinstance(node, DateKey) and node.field is DateField.SAVED) or (
            isinstance(node, ObjectIdKey) and node.kind is ObjectIdKind.EMAILID
        ):
            facts = True
    return DataNeeds(header=header and not body, body=body, facts=facts)
