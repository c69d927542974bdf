"""Per-message keys for SORT (RFC 5256, RFC 5957) and THREAD, from a header block.

`SortKeys.from_header` reads the few fields SORT and THREAD look at once;
the keys are plain strings and numbers, so they can be cached (per message,
they never change) and compared without touching the message again.
Ties are broken by the message number (RFC 5256 section 3), which the caller
appends to the key tuple.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Mapping, Sequence
from email.utils import mktime_tz, parsedate_tz
from operator import attrgetter, itemgetter
from typing import Final, NamedTuple

from mailparse.addresses import Address, parse_addresses
from mailparse.collation import base_subject, casemap_key
from mailparse.decoding import decode_header_value
from mailparse.headers import field_matcher, first_values
from mailparse.sort_spec import SortCriterion

# The fields the stored keys read (the first of each name).
SORT_FIELDS: Final = frozenset(
    {b"subject", b"from", b"to", b"cc", b"date", b"message-id", b"references", b"in-reply-to"}
)
_FIELDS: Final = field_matcher(SORT_FIELDS)
_MSG_ID: Final = re.compile(rb"<[^<>\s]+>")
_MAX_REFERENCES: Final = 256  # a longer chain is abuse; the last ones are what threading needs
# The stored form (`stored_keys`): version, sent date, bits, length of the strings, then
# six NUL-separated UTF-8 strings and the two NUL-separated msg-id fields.
_STORED: Final = struct.Struct("<BqBI")
_STORED_VERSION: Final = 1
_POSITION_BITS: Final = 32  # sort_int_column: a message's position below its value
_SENT_KNOWN: Final = 1  # the Date: field was readable (else SORT uses the internal date)
_REPLY: Final = 2
_HAS_ID: Final = 4
_STRINGS: Final = 8  # subject, from, to, cc, display from, display to, message-id, parents

__all__ = [
    "SORT_FIELDS",
    "SortCriterion",
    "SortKeys",
    "message_ids",
    "sent_date",
    "sort_columns",
    "sort_int_column",
    "sort_keyed",
    "sort_numbers",
    "stored_keys",
    "stored_keys_of",
    "stored_sent",
    "thread_fields",
]


def _first_mailbox(addresses: list[Address]) -> Address | None:
    return next((a for a in addresses if a.host is not None and a.mailbox is not None), None)


def _first_of(value: bytes | None, addresses: Callable[[bytes], list[Address]]) -> Address | None:
    """The first address with a mailbox and a host of a header value (parsed once for both keys)."""
    return _first_mailbox(addresses(value)) if value else None


def _mailbox_key(first: Address | None) -> str:
    """RFC 5256: the addr-mailbox (local part) of the first address."""
    if first is None or first.mailbox is None:
        return ""
    return casemap_key(first.mailbox.decode("utf-8", "replace"))


def _display_key(first: Address | None) -> str:
    """RFC 5957: the display name of the first address, else its addr-spec."""
    if first is None:
        return ""
    if first.name:
        name = decode_header_value(first.name).strip()
        if name:
            return casemap_key(name)
    mailbox = (first.mailbox or b"").decode("utf-8", "replace")
    host = (first.host or b"").decode("utf-8", "replace")
    return casemap_key(f"{mailbox}@{host}")


def _header_date(value: bytes | None) -> int | None:
    """The Date: field in UTC seconds, None when it is missing or unreadable."""
    if value:
        try:
            parsed = parsedate_tz(value[:256].decode("ascii", "replace"))
            if parsed is not None:
                return int(mktime_tz(parsed))
        except (ValueError, TypeError, OverflowError, IndexError):
            pass
    return None


def sent_date(value: bytes | None, internal_date: int) -> int:
    """The Date: field in UTC seconds; the internal date when it is missing or unreadable (RFC 5256 2.2)."""
    found = _header_date(value)
    return internal_date if found is None else found


def _no_nul(text: str) -> str:
    # The stored form separates strings by NUL; a NUL inside a header value is dropped (both forms).
    return text.replace("\0", "") if "\0" in text else text


def stored_keys(header: bytes) -> bytes:
    """The keys of a header block that do not depend on where the message is stored (the store keeps
    them per body, computed once at append): `SortKeys.from_stored` adds internal date and size."""
    return stored_keys_of(first_values(header, _FIELDS))


def stored_keys_of(
    first: Mapping[bytes, bytes], addresses: Callable[[bytes], list[Address]] = parse_addresses
) -> bytes:
    """`stored_keys` of a header block whose first value of each field in SORT_FIELDS is `first`
    (lower-case name -> unfolded value, as `first_values` gives them). `addresses`: how a value is
    parsed (`mailparse.head_facts` passes one shared with the indexed search text)."""
    subject, reply = base_subject(first.get(b"subject"))
    own = message_ids(first.get(b"message-id"))
    parents = message_ids(first.get(b"references")) or message_ids(first.get(b"in-reply-to"))[:1]
    sent = _header_date(first.get(b"date"))
    bits = (_SENT_KNOWN if sent is not None else 0) | (_REPLY if reply else 0) | (_HAS_ID if own else 0)
    sender, recipient = _first_of(first.get(b"from"), addresses), _first_of(first.get(b"to"), addresses)
    strings = (
        casemap_key(subject),
        _mailbox_key(sender),
        _mailbox_key(recipient),
        _mailbox_key(_first_of(first.get(b"cc"), addresses)),
        _display_key(sender),
        _display_key(recipient),
    )
    ids = (own[0] if own else b"", b" ".join(parents))
    text = "\0".join(_no_nul(t) for t in strings).encode("utf-8", "surrogatepass")
    return (
        _STORED.pack(_STORED_VERSION, sent or 0, bits, len(text))
        + text
        + b"\0"
        + b"\0".join(i.replace(b"\0", b"") for i in ids)
    )


def message_ids(value: bytes | None) -> tuple[bytes, ...]:
    """The msg-ids of a Message-ID/References/In-Reply-To value, in order."""
    if not value:
        return ()
    return tuple(_MSG_ID.findall(value))[-_MAX_REFERENCES:]


class SortKeys(NamedTuple):
    """What SORT and THREAD compare of one message.

    A NamedTuple, not a frozen dataclass: the first SORT of a big mailbox builds one
    per message from the store's stored form, and a tuple is built several times faster.
    """

    arrival: int
    size: int
    sent: int
    subject: str  # base subject, i;unicode-casemap key
    subject_reply: bool  # the subject said "Re:"/"Fwd:" (THREAD=REFERENCES step 6)
    from_: str
    to: str
    cc: str
    display_from: str
    display_to: str
    message_id: bytes | None
    parent_ids: tuple[bytes, ...]  # References, or the first In-Reply-To msg-id without one

    @classmethod
    def from_header(cls, header: bytes, *, internal_date: int, size: int) -> SortKeys:
        keys = cls.from_stored(stored_keys(header), internal_date=internal_date, size=size)
        assert keys is not None
        return keys

    @classmethod
    def from_stored(cls, raw: bytes, *, internal_date: int, size: int, addresses: bool = True) -> SortKeys | None:
        """The keys from `stored_keys` output; None for a form this version does not read.
        `addresses=False`: FROM, TO, CC and the display names left empty (THREAD compares none
        of them; a million messages' keys held at once are ~40% smaller)."""
        if len(raw) < _STORED.size or raw[0] != _STORED_VERSION:
            return None
        _, sent, bits, length = _STORED.unpack_from(raw)
        at = _STORED.size + length
        strings = raw[_STORED.size : at].decode("utf-8", "surrogatepass").split("\0")
        ids = raw[at + 1 :].split(b"\0")
        if len(strings) != _STRINGS - 2 or len(ids) != 2:
            return None
        subject, from_, to, cc, display_from, display_to = strings if addresses else (strings[0], "", "", "", "", "")
        return cls(
            internal_date,
            size,
            sent if bits & _SENT_KNOWN else internal_date,
            subject,
            bool(bits & _REPLY),
            from_,
            to,
            cc,
            display_from,
            display_to,
            ids[0] if bits & _HAS_ID else None,
            tuple(ids[1].split(b" ")) if ids[1] else (),
        )

    def key(self, criterion: SortCriterion) -> int | str:
        value: int | str = getattr(self, _ATTRIBUTE[criterion])
        return value


_ATTRIBUTE: Final = {
    SortCriterion.ARRIVAL: "arrival",
    SortCriterion.CC: "cc",
    SortCriterion.DATE: "sent",
    SortCriterion.FROM: "from_",
    SortCriterion.SIZE: "size",
    SortCriterion.SUBJECT: "subject",
    SortCriterion.TO: "to",
    SortCriterion.DISPLAYFROM: "display_from",
    SortCriterion.DISPLAYTO: "display_to",
}


def sort_numbers(entries: list[tuple[int, SortKeys]], program: list[tuple[SortCriterion, bool]]) -> list[int]:
    """Message numbers ordered by (criterion, reverse) pairs, ties by number (RFC 5256 3)."""
    ordered = sorted(entries, key=itemgetter(0))
    return sort_keyed([n for n, _ in ordered], [k for _, k in ordered], program)


def sort_keyed(
    numbers: Sequence[int], keys: Sequence[SortKeys], program: list[tuple[SortCriterion, bool]]
) -> list[int]:
    """`numbers` (ascending) ordered by (criterion, reverse) pairs, `keys[i]` the keys of
    `numbers[i]`; ties by number (RFC 5256 3). One column per criterion, no tuple per message."""
    columns = {criterion: list(map(attrgetter(_ATTRIBUTE[criterion]), keys)) for criterion, _ in program}
    return sort_columns(numbers, columns, program)


def sort_columns(
    numbers: Sequence[int],
    columns: Mapping[SortCriterion, Sequence[int] | Sequence[str]],
    program: list[tuple[SortCriterion, bool]],
) -> list[int]:
    """`numbers` (ascending) ordered by (criterion, reverse) pairs, `columns[criterion][i]` the
    value of `numbers[i]`; ties by number (RFC 5256 3)."""
    # Stable sorts from the last criterion to the first give the combined order; a reversed
    # stable sort keeps equal keys in ascending number order. Positions are sorted, keyed by
    # the column itself (`__getitem__`, a C call: no lambda, no tuple per message).
    order = list(range(len(numbers)))
    for criterion, reverse in reversed(program):
        order.sort(key=columns[criterion].__getitem__, reverse=reverse)
    return [numbers[i] for i in order]


def sort_int_column(numbers: Sequence[int], column: Sequence[int], *, reverse: bool) -> list[int]:
    """`sort_columns(numbers, {c: column}, [(c, reverse)])` for one integer column, with one
    int per message at the peak instead of three (positions, keys, the result): each message's
    value and position in one int, sorted in place, then replaced by its number in place.
    A SORT (DATE) of a million messages made ~100 MB of small ints, which jemalloc's
    metadata outlived (issue 17). Ties go by number ascending either way (RFC 5256 3)."""
    if len(numbers) >= 1 << _POSITION_BITS:
        raise ValueError("too many messages to sort by position")
    sign = -1 if reverse else 1
    keyed = [((sign * value) << _POSITION_BITS) | i for i, value in enumerate(column)]
    keyed.sort()
    mask = (1 << _POSITION_BITS) - 1
    for j, key in enumerate(keyed):
        keyed[j] = numbers[key & mask]
    return keyed


class ThreadFields(NamedTuple):
    """What THREAD reads of one message's stored keys (`thread_fields`)."""

    sent: int
    subject: str
    subject_reply: bool
    message_id: bytes | None
    parent_ids: tuple[bytes, ...]


def thread_fields(raw: bytes, internal_date: int) -> ThreadFields | None:
    """The fields of `SortKeys.from_stored(raw, ...)` THREAD reads, decoding the subject alone (a
    THREAD over more messages than the key cache holds builds no SortKeys); None where
    `from_stored` reads no keys either."""
    if len(raw) < _STORED.size or raw[0] != _STORED_VERSION:
        return None
    _, sent, bits, length = _STORED.unpack_from(raw)
    at = _STORED.size + length
    if raw.count(b"\0", _STORED.size, at) != _STRINGS - 3:
        return None
    ids = raw[at + 1 :].split(b"\0")
    if len(ids) != 2:
        return None
    subject_end = raw.index(b"\0", _STORED.size, at)
    return ThreadFields(
        sent if bits & _SENT_KNOWN else internal_date,
        raw[_STORED.size : subject_end].decode("utf-8", "surrogatepass"),
        bool(bits & _REPLY),
        ids[0] if bits & _HAS_ID else None,
        tuple(ids[1].split(b" ")) if ids[1] else (),
    )


def stored_sent(raw: bytes, internal_date: int) -> int | None:
    """`SortKeys.from_stored(raw, ...).sent` without decoding the strings (a SORT by DATE of a
    big mailbox needs nothing else); None where `from_stored` reads no keys either."""
    if len(raw) < _STORED.size or raw[0] != _STORED_VERSION or raw.count(b"\0", _STORED.size) != _STRINGS - 1:
        return None
    _, sent, bits, _ = _STORED.unpack_from(raw)
    return int(sent) if bits & _SENT_KNOWN else internal_date
