"""Per-message keys for SORT (RFC 5256, RFC 5957) and THREAD, from a header block.

`SortKeys.from_header` reads the few fields SORT and THREAD look at once;
the keys are plain strings and numbers, so they can be cached (per message,
they never change) and compared without touching the message again.
Ties are broken by the message number (RFC 5256 section 3), which the caller
appends to the key tuple.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import mktime_tz, parsedate_tz
from typing import Final

from imapd.message.collation import base_subject, casemap_key
from imapd.protocol.sort_spec import SortCriterion
from mailparse.addresses import Address, parse_addresses
from mailparse.decoding import decode_header_value
from mailparse.headers import field_matcher, first_values

_FIELDS: Final = field_matcher(
    frozenset({b"subject", b"from", b"to", b"cc", b"date", b"message-id", b"references", b"in-reply-to"})
)
_MSG_ID: Final = re.compile(rb"<[^<>\s]+>")
_MAX_REFERENCES: Final = 256  # a longer chain is abuse; the last ones are what threading needs

__all__ = ["SortCriterion", "SortKeys", "message_ids", "sent_date", "sort_numbers"]


def _first_mailbox(addresses: list[Address]) -> Address | None:
    return next((a for a in addresses if a.host is not None and a.mailbox is not None), None)


def _mailbox_key(value: bytes | None) -> str:
    """RFC 5256: the addr-mailbox (local part) of the first address."""
    first = _first_mailbox(parse_addresses(value)) if value else None
    if first is None or first.mailbox is None:
        return ""
    return casemap_key(first.mailbox.decode("utf-8", "replace"))


def _display_key(value: bytes | None) -> str:
    """RFC 5957: the display name of the first address, else its addr-spec."""
    first = _first_mailbox(parse_addresses(value)) if value else None
    if first is None:
        return ""
    if first.name:
        name = decode_header_value(first.name).strip()
        if name:
            return casemap_key(name)
    mailbox = (first.mailbox or b"").decode("utf-8", "replace")
    host = (first.host or b"").decode("utf-8", "replace")
    return casemap_key(f"{mailbox}@{host}")


def sent_date(value: bytes | None, internal_date: int) -> int:
    """The Date: field in UTC seconds; the internal date when it is missing or unreadable (RFC 5256 2.2)."""
    if value:
        try:
            parsed = parsedate_tz(value[:256].decode("ascii", "replace"))
            if parsed is not None:
                return int(mktime_tz(parsed))
        except (ValueError, TypeError, OverflowError, IndexError):
            pass
    return internal_date


def message_ids(value: bytes | None) -> tuple[bytes, ...]:
    """The msg-ids of a Message-ID/References/In-Reply-To value, in order."""
    if not value:
        return ()
    return tuple(_MSG_ID.findall(value))[-_MAX_REFERENCES:]


@dataclass(frozen=True, slots=True)
class SortKeys:
    """What SORT and THREAD compare of one message."""

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
        first = first_values(header, _FIELDS)
        subject, reply = base_subject(first.get(b"subject"))
        own = message_ids(first.get(b"message-id"))
        parents = message_ids(first.get(b"references")) or message_ids(first.get(b"in-reply-to"))[:1]
        return cls(
            arrival=internal_date,
            size=size,
            sent=sent_date(first.get(b"date"), internal_date),
            subject=casemap_key(subject),
            subject_reply=reply,
            from_=_mailbox_key(first.get(b"from")),
            to=_mailbox_key(first.get(b"to")),
            cc=_mailbox_key(first.get(b"cc")),
            display_from=_display_key(first.get(b"from")),
            display_to=_display_key(first.get(b"to")),
            message_id=own[0] if own else None,
            parent_ids=parents,
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
    ordered = sorted(entries, key=lambda e: e[0])
    # Stable sorts from the last criterion to the first give the combined order;
    # a reversed stable sort keeps equal keys in ascending number order.
    for criterion, reverse in reversed(program):
        values = {number: keys.key(criterion) for number, keys in ordered}
        ordered.sort(key=lambda e: values[e[0]], reverse=reverse)
    return [number for number, _ in ordered]
