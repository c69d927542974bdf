"""BODY and BODYSTRUCTURE (RFC 3501 7.4.2) from a MIME tree.

`extended=False` gives the non-extensible BODY form; `True` adds the
extension data (MD5, disposition, language, location; for multiparts the
parameters). Multipart children are written back to back without a space,
as the grammar (body-type-mpart = 1*body SP media-subtype) requires, so they
are pre-encoded into one Raw value.
"""

from __future__ import annotations

from imapd.message.envelope import envelope
from imapd.protocol.values import NIL, List, Number, Raw, String, Value, encode, nstring
from mailparse.content_fields import TypedValue, parse_typed
from mailparse.mime_tree import Part


def _params(params: tuple[tuple[bytes, bytes], ...]) -> Value:
    if not params:
        return NIL
    return List(tuple(String(item) for pair in params for item in pair))


def _disposition(part: Part) -> Value:
    raw = part.field_value(b"content-disposition")
    if raw is None:
        return NIL
    parsed = parse_typed(raw, with_subtype=False)
    if not parsed.main:
        return NIL
    return List((String(parsed.main), _params(parsed.params)))


def _language(part: Part) -> Value:
    raw = part.field_value(b"content-language")
    if raw is None:
        return NIL
    tags = [t.strip() for t in raw.split(b",") if t.strip()]
    if not tags:
        return NIL
    if len(tags) == 1:
        return String(tags[0])
    return List(tuple(String(t) for t in tags))


def _with_default_charset(ctype: TypedValue) -> tuple[tuple[bytes, bytes], ...]:
    # Text without a charset is US-ASCII (RFC 2045 5.2); saying so helps clients.
    if ctype.main == b"TEXT" and ctype.param(b"CHARSET") is None:
        return ((b"CHARSET", b"US-ASCII"), *ctype.params)
    return ctype.params


def body_structure(part: Part, extended: bool) -> Value:
    """The structure of `part` (pass the root for the whole message)."""
    ctype = part.content_type
    if part.children:
        items: list[Value] = [
            Raw(b"".join(encode(body_structure(child, extended)) for child in part.children)),
            String(ctype.sub),
        ]
        if extended:
            items += [
                _params(ctype.params),
                _disposition(part),
                _language(part),
                nstring(part.field_value(b"content-location")),
            ]
        return List(tuple(items))
    items = [
        String(ctype.main),
        String(ctype.sub),
        _params(_with_default_charset(ctype)),
        nstring(part.field_value(b"content-id")),
        nstring(part.field_value(b"content-description")),
        String(part.encoding or b"7BIT"),
        Number(part.body_size),
    ]
    if part.message is not None:
        items += [
            envelope(part.message.header),
            body_structure(part.message, extended),
            Number(part.body_lines),
        ]
    elif ctype.main == b"TEXT":
        items.append(Number(part.body_lines))
    if extended:
        items += [
            nstring(part.field_value(b"content-md5")),
            _disposition(part),
            _language(part),
            nstring(part.field_value(b"content-location")),
        ]
    return List(tuple(items))
