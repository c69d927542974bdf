"""The header fields SEARCH answers from an index, normalised once per message.

SUBJECT, FROM, TO, CC, BCC (and HEADER on those names) match a casefolded
substring of a decoded field value (see `search_eval`). The store computes
`indexed_text` when a message is appended and keeps it beside the message;
imapd asks it which messages hold a needle instead of fetching every header.
The text is the same the scan reads: the header block cut as `ParsedMessage`
cuts it, each value decoded by `decode_header_value` and casefolded.

Layout (UTF-8, surrogates passed through): the fields of INDEXED_FIELDS in
order, separated by FIELD_SEP; several occurrences of one field separated by
VALUE_SEP. Those two characters never stand inside a value (they become
VALUE_SEP), so a needle without them matches inside one value or nowhere;
a needle with them, or an empty one, is not answered from the index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final

from mailparse.addresses import Address, parse_addresses
from mailparse.decoding import decode_header_value
from mailparse.headers import header_end, parse_fields

INDEXED_FIELDS: Final = (b"subject", b"from", b"to", b"cc", b"bcc")
ADDRESS_FIELDS: Final = frozenset({b"from", b"to", b"cc", b"bcc", b"sender", b"reply-to"})


def search_values(
    name: bytes, value: bytes, addresses: Callable[[bytes], list[Address]] = parse_addresses
) -> Iterator[str]:
    """What SEARCH HEADER/FROM/... compares a needle with, for one field: the decoded,
    casefolded value and, for an address field, also each plain addr-spec without the
    comments and folding whitespace (CFWS) an address may carry inside
    (user-from@domain.org finds <user-from (c)@ (c) domain.org>). `addresses`: how a value
    is parsed (`mailparse.head_facts` passes one that remembers, shared with the sort keys)."""
    yield decode_header_value(value).casefold()
    if name in ADDRESS_FIELDS:
        for a in addresses(value):
            if a.mailbox is not None and a.host is not None:
                yield (a.mailbox + b"@" + a.host).decode("utf-8", "replace").casefold()


FIELD_SEP: Final = "\x1f"
VALUE_SEP: Final = "\x00"
_FIELD_AT: Final = {name.decode(): i for i, name in enumerate(INDEXED_FIELDS)}


def indexed_text(header_block: bytes) -> bytes:
    """The normalised values of the indexed fields of one message's header block."""
    return indexed_text_of((f.name, f.value) for f in parse_fields(header_block[: header_end(header_block)]))


def indexed_text_of(
    fields: Iterable[tuple[bytes, bytes]], addresses: Callable[[bytes], list[Address]] = parse_addresses
) -> bytes:
    """`indexed_text` of the (lower-case name, unfolded value) of the fields, in order, of a
    header block cut at its `header_end` (other names are passed over)."""
    values: dict[bytes, list[str]] = {name: [] for name in INDEXED_FIELDS}
    for name, value in fields:
        found = values.get(name)
        if found is not None:
            found.extend(text.replace(FIELD_SEP, VALUE_SEP) for text in search_values(name, value, addresses))
    joined = FIELD_SEP.join(VALUE_SEP.join(values[name]) for name in INDEXED_FIELDS)
    return joined.encode("utf-8", "surrogatepass")


def field_position(field: str) -> int | None:
    """Where a SEARCH header field sits in the indexed text; None if it is not indexed."""
    return _FIELD_AT.get(field.lower())


def indexed_needle(field: str, value: str) -> tuple[int, bytes] | None:
    """(field position, needle bytes) when the index can answer HEADER field value, else None."""
    at = field_position(field)
    if at is None or not value or FIELD_SEP in value or VALUE_SEP in value:
        return None
    return at, value.casefold().encode("utf-8", "surrogatepass")


def text_matches(text: bytes, at: int, needle: bytes) -> bool:
    """Whether field `at` of an indexed text holds `needle` (the answer the scan gives)."""
    if needle not in text:
        return False
    parts = text.split(FIELD_SEP.encode())
    return at < len(parts) and needle in parts[at]
