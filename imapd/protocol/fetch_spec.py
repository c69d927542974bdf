"""Typed FETCH attributes (RFC 3501 section 6.4.5, CONDSTORE MODSEQ, RFC 3516 BINARY).

The protocol parser turns the wire syntax into these values; the session asks
each attribute what it needs from the store (`needs_header`, `needs_body`) so
a FETCH FLAGS never pulls message bytes and a FETCH ENVELOPE pulls only the
header block; `sets_seen` tells the session which items set \\Seen implicitly.
The renderer in imapd.message turns them into response values.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final


class SimpleKind(enum.Enum):
    """Attributes without a section; the value is the wire name."""

    ENVELOPE = "ENVELOPE"
    FLAGS = "FLAGS"
    INTERNALDATE = "INTERNALDATE"
    RFC822 = "RFC822"
    RFC822_HEADER = "RFC822.HEADER"
    RFC822_TEXT = "RFC822.TEXT"
    RFC822_SIZE = "RFC822.SIZE"
    BODY = "BODY"
    BODYSTRUCTURE = "BODYSTRUCTURE"
    UID = "UID"
    MODSEQ = "MODSEQ"
    SAVEDATE = "SAVEDATE"  # RFC 8514
    EMAILID = "EMAILID"  # RFC 8474
    THREADID = "THREADID"  # RFC 8474


# What each simple kind needs from the store. RFC822.SIZE comes from the
# message metadata, ENVELOPE and RFC822.HEADER only from the header block.
_SIMPLE_NEEDS_HEADER: Final = frozenset({SimpleKind.ENVELOPE, SimpleKind.RFC822_HEADER})
_SIMPLE_NEEDS_BODY: Final = frozenset(
    {SimpleKind.RFC822, SimpleKind.RFC822_TEXT, SimpleKind.BODY, SimpleKind.BODYSTRUCTURE}
)
# What the store keeps per message beside the record (FetchRequest with_facts).
_SIMPLE_NEEDS_FACTS: Final = frozenset({SimpleKind.SAVEDATE, SimpleKind.EMAILID})
# RFC822.HEADER is defined as BODY.PEEK[HEADER], so it does not set \Seen.
_SIMPLE_SETS_SEEN: Final = frozenset({SimpleKind.RFC822, SimpleKind.RFC822_TEXT})


class TextSpec(enum.Enum):
    """The text part of a section spec; None in `Section.text` is the empty spec."""

    HEADER = "HEADER"
    HEADER_FIELDS = "HEADER.FIELDS"
    HEADER_FIELDS_NOT = "HEADER.FIELDS.NOT"
    TEXT = "TEXT"
    MIME = "MIME"


@dataclass(frozen=True, slots=True)
class Section:
    """A section spec: part path (1-based, empty = whole message) plus text spec.

    `fields` holds the header names of HEADER.FIELDS(.NOT) as the client sent
    them (the response echoes them); matching is case-insensitive.
    """

    part: tuple[int, ...] = ()
    text: TextSpec | None = None
    fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if any(p < 1 for p in self.part):
            raise ValueError("section part numbers start at 1")
        if self.text is TextSpec.MIME and not self.part:
            raise ValueError("MIME needs a part number")
        if (self.text in (TextSpec.HEADER_FIELDS, TextSpec.HEADER_FIELDS_NOT)) != bool(self.fields):
            raise ValueError("HEADER.FIELDS(.NOT) and only they carry a non-empty field list")

    @property
    def header_only(self) -> bool:
        """True when the top-level header block is enough to answer it."""
        return not self.part and self.text in (TextSpec.HEADER, TextSpec.HEADER_FIELDS, TextSpec.HEADER_FIELDS_NOT)

    def label(self) -> bytes:
        """The section as written inside the brackets of the response label."""
        pieces = [str(p) for p in self.part]
        if self.text is not None:
            pieces.append(self.text.value)
        out = ".".join(pieces).encode("ascii")
        if self.fields:
            out += b" (" + b" ".join(_field_label(f) for f in self.fields) + b")"
        return out


def _field_label(name: str) -> bytes:
    raw = name.encode("ascii", "replace")
    if raw and all(0x21 <= b <= 0x7E and b not in b'(){%*"\\]' for b in raw):
        return raw
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


@dataclass(frozen=True, slots=True)
class Partial:
    """<origin.octets>: `octets` bytes starting at `origin` (0-based)."""

    origin: int
    octets: int

    def __post_init__(self) -> None:
        if self.origin < 0 or self.octets < 0:
            raise ValueError("partial origin and length are non-negative")


@dataclass(frozen=True, slots=True)
class SimpleItem:
    kind: SimpleKind

    @property
    def needs_header(self) -> bool:
        return self.kind in _SIMPLE_NEEDS_HEADER

    @property
    def needs_body(self) -> bool:
        return self.kind in _SIMPLE_NEEDS_BODY

    @property
    def sets_seen(self) -> bool:
        return self.kind in _SIMPLE_SETS_SEEN

    @property
    def needs_facts(self) -> bool:
        return self.kind in _SIMPLE_NEEDS_FACTS

    def label(self) -> bytes:
        return self.kind.value.encode("ascii")


@dataclass(frozen=True, slots=True)
class PreviewItem:
    """PREVIEW / PREVIEW (LAZY) (RFC 8970), and Dovecot's PREVIEW (FUZZY) / SNIPPET (FUZZY).

    The store computes every preview at append, so LAZY never has to wait: it
    changes nothing. The FUZZY forms (the draft RFC 8970 grew out of) answer
    `NAME (FUZZY "text")`, the RFC form `PREVIEW "text"`.
    """

    name: str = "PREVIEW"  # or "SNIPPET"
    fuzzy: bool = False
    lazy: bool = False

    @property
    def needs_header(self) -> bool:
        return False

    @property
    def needs_body(self) -> bool:
        return False

    @property
    def sets_seen(self) -> bool:
        return False

    @property
    def needs_facts(self) -> bool:
        return True

    def label(self) -> bytes:
        return self.name.encode("ascii")


@dataclass(frozen=True, slots=True)
class BodySection:
    """BODY[section]<partial> or, with peek, BODY.PEEK[section]<partial>."""

    section: Section = Section()
    partial: Partial | None = None
    peek: bool = False

    @property
    def needs_header(self) -> bool:
        return self.section.header_only

    @property
    def needs_body(self) -> bool:
        return not self.section.header_only

    @property
    def sets_seen(self) -> bool:
        return not self.peek

    @property
    def needs_facts(self) -> bool:
        return False

    def label(self) -> bytes:
        # The response never says PEEK and gives only the origin of a partial.
        out = b"BODY[" + self.section.label() + b"]"
        if self.partial is not None:
            out += b"<%d>" % self.partial.origin
        return out


@dataclass(frozen=True, slots=True)
class BinarySection:
    """BINARY[part]<partial> / BINARY.PEEK[...] (RFC 3516): decoded content."""

    part: tuple[int, ...] = ()
    partial: Partial | None = None
    peek: bool = False

    @property
    def needs_header(self) -> bool:
        return False

    @property
    def needs_body(self) -> bool:
        return True

    @property
    def sets_seen(self) -> bool:
        return not self.peek

    @property
    def needs_facts(self) -> bool:
        return False

    def label(self) -> bytes:
        out = b"BINARY[" + ".".join(str(p) for p in self.part).encode("ascii") + b"]"
        if self.partial is not None:
            out += b"<%d>" % self.partial.origin
        return out


@dataclass(frozen=True, slots=True)
class BinarySize:
    """BINARY.SIZE[part] (RFC 3516): size of the decoded content."""

    part: tuple[int, ...] = ()

    @property
    def needs_header(self) -> bool:
        return False

    @property
    def needs_body(self) -> bool:
        return True

    @property
    def sets_seen(self) -> bool:
        return False

    @property
    def needs_facts(self) -> bool:
        return False

    def label(self) -> bytes:
        return b"BINARY.SIZE[" + ".".join(str(p) for p in self.part).encode("ascii") + b"]"


FetchAttribute = SimpleItem | BodySection | BinarySection | BinarySize | PreviewItem

ENVELOPE: Final = SimpleItem(SimpleKind.ENVELOPE)
FLAGS: Final = SimpleItem(SimpleKind.FLAGS)
INTERNALDATE: Final = SimpleItem(SimpleKind.INTERNALDATE)
RFC822: Final = SimpleItem(SimpleKind.RFC822)
RFC822_HEADER: Final = SimpleItem(SimpleKind.RFC822_HEADER)
RFC822_TEXT: Final = SimpleItem(SimpleKind.RFC822_TEXT)
RFC822_SIZE: Final = SimpleItem(SimpleKind.RFC822_SIZE)
BODY: Final = SimpleItem(SimpleKind.BODY)
BODYSTRUCTURE: Final = SimpleItem(SimpleKind.BODYSTRUCTURE)
UID: Final = SimpleItem(SimpleKind.UID)
MODSEQ: Final = SimpleItem(SimpleKind.MODSEQ)
SAVEDATE: Final = SimpleItem(SimpleKind.SAVEDATE)

MACROS: Final[dict[str, tuple[FetchAttribute, ...]]] = {
    "ALL": (FLAGS, INTERNALDATE, RFC822_SIZE, ENVELOPE),
    "FAST": (FLAGS, INTERNALDATE, RFC822_SIZE),
    "FULL": (FLAGS, INTERNALDATE, RFC822_SIZE, ENVELOPE, BODY),
}

SIMPLE_BY_NAME: Final[dict[str, SimpleItem]] = {kind.value: SimpleItem(kind) for kind in SimpleKind}


def expand_macro(name: str) -> tuple[FetchAttribute, ...] | None:
    """ALL/FAST/FULL (any case) to their attribute lists; None if not a macro."""
    return MACROS.get(name.upper())


@dataclass(frozen=True, slots=True)
class DataNeeds:
    """The least message data a FETCH (or SEARCH) needs from the store.

    At most one is true: `body` asks for the whole message (the header comes
    with it), `header` for the header block alone. They map one to one onto
    the store's FetchRequest with_header / with_body; `facts` onto with_facts
    (save date, EMAILID, preview).
    """

    header: bool
    body: bool
    facts: bool = False

    @property
    def any(self) -> bool:
        return self.header or self.body


def data_needs(attributes: Iterable[FetchAttribute]) -> DataNeeds:
    """Combine per-attribute needs; `body` means the full message bytes (which include the header)."""
    header = body = facts = False
    for attr in attributes:
        header = header or attr.needs_header
        body = body or attr.needs_body
        facts = facts or attr.needs_facts
    return DataNeeds(header=header and not body, body=body, facts=facts)


def sets_seen(attributes: Iterable[FetchAttribute]) -> bool:
    return any(attr.sets_seen for attr in attributes)


def with_uid(attributes: tuple[FetchAttribute, ...]) -> tuple[FetchAttribute, ...]:
    """UID FETCH always returns UID (RFC 3501 6.4.8); add it first when missing."""
    return attributes if UID in attributes else (UID, *attributes)


def with_modseq(attributes: tuple[FetchAttribute, ...]) -> tuple[FetchAttribute, ...]:
    """FETCH ... (CHANGEDSINCE n) implies MODSEQ (RFC 7162 3.1.4.1)."""
    return attributes if MODSEQ in attributes else (*attributes, MODSEQ)
