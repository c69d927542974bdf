"""ENVELOPE (RFC 3501 7.4.2) from the header block alone.

Values are the raw unfolded header bytes: RFC 3501 wants RFC 2047 encoded
words passed through undecoded. The first occurrence of a field wins.
Sender and Reply-To default to From when absent or empty.
"""

from __future__ import annotations

from typing import Final

from imapd.message.addresses import Address, parse_addresses
from imapd.message.headers import HeaderField, parse_fields
from imapd.protocol.values import NIL, List, Value, nstring

_WANTED: Final = frozenset(
    {b"date", b"subject", b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc", b"in-reply-to", b"message-id"}
)


def _address_value(address: Address) -> Value:
    return List((nstring(address.name), nstring(address.adl), nstring(address.mailbox), nstring(address.host)))


def _address_list(value: bytes | None) -> Value:
    if value is None:
        return NIL
    addresses = parse_addresses(value)
    if not addresses:
        return NIL
    return List(tuple(_address_value(a) for a in addresses))


def envelope_from_fields(fields: list[HeaderField]) -> Value:
    first: dict[bytes, bytes] = {}
    for f in fields:
        if f.name in _WANTED and f.name not in first:
            first[f.name] = f.value
    from_ = _address_list(first.get(b"from"))
    sender = _address_list(first.get(b"sender"))
    reply_to = _address_list(first.get(b"reply-to"))
    return List(
        (
            nstring(first.get(b"date")),
            nstring(first.get(b"subject")),
            from_,
            from_ if sender is NIL else sender,
            from_ if reply_to is NIL else reply_to,
            _address_list(first.get(b"to")),
            _address_list(first.get(b"cc")),
            _address_list(first.get(b"bcc")),
            nstring(first.get(b"in-reply-to")),
            nstring(first.get(b"message-id")),
        )
    )


def envelope(header: bytes) -> Value:
    """ENVELOPE of a header block (the message's, or an embedded message's)."""
    return envelope_from_fields(parse_fields(header))
