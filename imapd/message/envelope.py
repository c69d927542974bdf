"""ENVELOPE (RFC 3501 7.4.2) from the header block alone.

Values are the raw unfolded header bytes: RFC 3501 wants RFC 2047 encoded
words passed through undecoded. The first occurrence of a field wins.
Sender and Reply-To default to From when absent or empty.
"""

from __future__ import annotations

from typing import Final

from imapd.message import wire
from imapd.protocol.values import Raw
from mailparse.addresses import Address, parse_addresses
from mailparse.headers import field_matcher, first_values

_WANTED: Final = frozenset(
    {b"date", b"subject", b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc", b"in-reply-to", b"message-id"}
)
_WANTED_FIELDS: Final = field_matcher(_WANTED)


def _address_wire(address: Address) -> bytes:
    return b"(%s %s %s %s)" % (
        wire.nstring(address.name),
        wire.nstring(address.adl),
        wire.nstring(address.mailbox),
        wire.nstring(address.host),
    )


def _address_list(value: bytes | None) -> bytes:
    if value is None:
        return b"NIL"
    addresses = parse_addresses(value)
    if not addresses:
        return b"NIL"
    return b"(" + b"".join(_address_wire(a) for a in addresses) + b")"  # RFC 3501: "(" 1*address ")"


def envelope_wire(first: dict[bytes, bytes]) -> bytes:
    """The ENVELOPE structure in wire form (built directly: it is the hot path of mail clients)."""
    from_ = _address_list(first.get(b"from"))
    sender = _address_list(first.get(b"sender"))
    reply_to = _address_list(first.get(b"reply-to"))
    return b"(%s)" % b" ".join(
        (
            wire.nstring(first.get(b"date")),
            wire.nstring(first.get(b"subject")),
            from_,
            from_ if sender == b"NIL" else sender,
            from_ if reply_to == b"NIL" else reply_to,
            _address_list(first.get(b"to")),
            _address_list(first.get(b"cc")),
            _address_list(first.get(b"bcc")),
            wire.nstring(first.get(b"in-reply-to")),
            wire.nstring(first.get(b"message-id")),
        )
    )


def envelope(header: bytes) -> Raw:
    """ENVELOPE of a header block (the message's, or an embedded message's)."""
    return Raw(envelope_wire(first_values(header, _WANTED_FIELDS)))
