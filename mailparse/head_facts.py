"""The search text and the SORT/THREAD keys of a new message, from one parse of its header block.

The store derives both when a message arrives (store/message_ops.py): the indexed
header text (`search_fields.indexed_text`) and the stored sort keys
(`sort_keys.stored_keys`). Each read the block on its own: `indexed_text` built a
`HeaderField` for every field (Received, DKIM-Signature ... included), `stored_keys`
searched it again, and From, To and Cc were parsed as addresses by both.
`index_and_keys` finds the fields either needs in one regex pass (the others are
skipped by the regex engine, as `first_values` does), unfolds each once, parses
each address value once, and gives byte for byte what the two functions give
(tests/test_mailparse_head_facts.py compares them).

Why one pass is exact: the indexed text reads the fields of the block cut at
`header_end`, the sort keys the first of each name in the whole block. The cut is
at the start of a line; unless that line continues a field (it begins with a
blank), no field runs across it, so the fields before the cut are those of the
cut block. A cut anywhere else (never made by `header_end`) is left to the two
separate functions.
"""

from __future__ import annotations

from typing import Final

from mailparse.addresses import Address, parse_addresses
from mailparse.headers import field_matcher, header_end, unfold
from mailparse.search_fields import INDEXED_FIELDS, indexed_text, indexed_text_of
from mailparse.sort_keys import SORT_FIELDS, stored_keys, stored_keys_of

_INDEXED: Final = frozenset(INDEXED_FIELDS)
_WANTED: Final = field_matcher(SORT_FIELDS | _INDEXED)
_BLANKS: Final = (b" ", b"\t")
_SHARED: Final = (b"from", b"to", b"cc")


def index_and_keys(header_block: bytes) -> tuple[bytes, bytes]:
    """(`indexed_text(header_block)`, `stored_keys(header_block)`), the block read once."""
    cut = header_end(header_block)
    if cut < len(header_block) and ((cut and header_block[cut - 1] != 0x0A) or header_block[cut : cut + 1] in _BLANKS):
        return indexed_text(header_block), stored_keys(header_block)
    indexed: list[tuple[bytes, bytes]] = []
    first: dict[bytes, bytes] = {}
    for m in _WANTED.finditer(header_block):
        name = m.group(1).lower()
        value = unfold(m.group(2))
        if name in _INDEXED and m.start() < cut:
            indexed.append((name, value))
        if name not in first and name in SORT_FIELDS:
            first[name] = value
    # The values both read: the first From, To and Cc (the text reads every occurrence, the
    # keys the first). Only those are remembered, so a block of thousands of address fields
    # holds no more parses at once than before.
    shared = {first[name] for name in _SHARED if name in first}
    parsed: dict[bytes, list[Address]] = {}

    def addresses(value: bytes) -> list[Address]:
        if value not in shared:
            return parse_addresses(value)
        found = parsed.get(value)
        if found is None:
            found = parsed[value] = parse_addresses(value)
        return found

    return indexed_text_of(indexed, addresses), stored_keys_of(first, addresses)
