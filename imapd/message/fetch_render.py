"""The FETCH renderer: typed attributes + a message view -> (label, value) pairs.

The session writes "* n FETCH (" + label SP value ... + ")": `fetch_response`
gives that line in pieces; `fetch_list` builds the parenthesised list as a value. Whole-message bodies go out as
ChunkedLiteral from the chunks the store sent, never joined. `FetchPlan` is what a FETCH works
out of its attribute list once (labels, data needs) and writes the commonest attributes with
(FLAGS, UID, MODSEQ, RFC822.SIZE, BODY[HEADER], BODY[]) straight to bytes, the same bytes
`render_value` + `encode_into` give (a test compares them): clients repeat the same FETCH.
"""

from __future__ import annotations

from typing import Final, assert_never

from imapd.message import object_ids
from imapd.message.binary_content import BinaryContent, part_content
from imapd.message.bodystructure import body_structure
from imapd.message.dates import format_internal_date
from imapd.message.envelope import envelope
from imapd.message.index_fetch import from_index
from imapd.message.sections import apply_partial, header_section, section_bytes, slice_chunks
from imapd.protocol.fetch_spec import (
    ENVELOPE,
    FLAGS,
    BinarySection,
    BinarySize,
    BodySection,
    FetchAttribute,
    Partial,
    PreviewItem,
    SimpleItem,
    SimpleKind,
    TextSpec,
    data_needs,
    sets_seen,
)
from imapd.protocol.values import NIL, Atom, ChunkedLiteral, List, Literal, Number, Raw, String, Value, encode_into
from mailparse.view import MessageView, ParsedMessage

RECENT = "\\Recent"


def flags_value(flags: tuple[str, ...], recent: bool = False) -> Value:
    """The flag list in wire form (flags are atoms: one piece, not a List of Atoms to encode)."""
    if recent and RECENT not in flags:
        flags = (*flags, RECENT)
    return Raw(b"(" + " ".join(flags).encode("ascii") + b")")


def _whole(msg: ParsedMessage, partial: Partial | None) -> Value:
    view = msg.view
    chunks = view.chunks
    if chunks is None:
        return Literal(apply_partial(msg.full(), partial))  # raises MissingMessageData
    if partial is not None:
        chunks = slice_chunks(chunks, partial.origin, partial.octets)
    return ChunkedLiteral(sum(len(c) for c in chunks), chunks)


def _body_section(msg: ParsedMessage, item: BodySection) -> Value:
    section = item.section
    if section.part or section.text is not None:
        if section.header_only:  # never build a MIME tree for the top-level header
            data: bytes | None = header_section(msg.header(), section)
        else:
            data = section_bytes(msg.tree(), section)
        if data is None:
            return NIL
        return Literal(apply_partial(data, item.partial))
    return _whole(msg, item.partial)


def _binary_value(content: BinaryContent, partial: Partial | None) -> Value:
    data = apply_partial(content.data, partial)
    # literal8 (RFC 3516) for decoded/binary content; a plain literal may not carry NUL in any case.
    if content.needs_literal8 or b"\x00" in data:
        return Raw(b"~{%d}\r\n" % len(data) + data)
    return Literal(data)


def render_item(item: FetchAttribute, msg: ParsedMessage) -> tuple[bytes, Value]:
    return item.label(), render_value(item, msg)


def render_value(item: FetchAttribute, msg: ParsedMessage) -> Value:
    """The value of one attribute (its label is the attribute's own: computed once per command)."""
    view = msg.view
    if isinstance(item, SimpleItem):
        kind = item.kind
        value: Value
        if kind is SimpleKind.FLAGS:
            value = flags_value(view.flags, view.recent)
        elif kind is SimpleKind.UID:
            value = Number(view.uid)
        elif kind is SimpleKind.MODSEQ:
            value = List((Number(view.modseq),))
        elif kind is SimpleKind.INTERNALDATE:
            value = String(format_internal_date(view.internal_date, view.tz_offset_minutes))
        elif kind is SimpleKind.RFC822_SIZE:
            value = Number(view.size)
        elif kind is SimpleKind.SAVEDATE:
            # RFC 8514: NIL when the mailbox keeps no save dates; ours all do (the store
            # gives the internal date for a message saved before it kept them).
            saved = view.save_date
            value = NIL if saved is None else String(format_internal_date(saved, 0))
        elif kind is SimpleKind.EMAILID:
            value = NIL if view.email_id is None else List((Atom(object_ids.email_id(view.email_id)),))
        elif kind is SimpleKind.THREADID:
            value = NIL  # RFC 8474 5.2: no thread ids kept (imapd/message/object_ids.py)
        elif kind is SimpleKind.ENVELOPE:
            value = envelope(msg.header())
        elif kind is SimpleKind.RFC822:
            value = _whole(msg, None)
        elif kind is SimpleKind.RFC822_HEADER:
            value = Literal(msg.header())
        elif kind is SimpleKind.RFC822_TEXT:
            value = Literal(msg.full()[len(msg.header()) :])
        elif kind is SimpleKind.BODY:
            value = body_structure(msg.tree(), extended=False)
        else:
            value = body_structure(msg.tree(), extended=True)
        return value
    if isinstance(item, BodySection):
        return _body_section(msg, item)
    if isinstance(item, BinarySection):
        content = part_content(msg.tree(), item.part)
        if content is None:
            return NIL
        return _binary_value(content, item.partial)
    if isinstance(item, BinarySize):
        content = part_content(msg.tree(), item.part)
        return Number(0 if content is None else len(content.data))
    if isinstance(item, PreviewItem):
        text: Value = NIL if view.preview is None else String(view.preview.encode("utf-8", "surrogatepass"))
        return List((Atom("FUZZY"), text)) if item.fuzzy else text
    assert_never(item)


def render_fetch(attributes: tuple[FetchAttribute, ...], view: MessageView) -> list[tuple[bytes, Value]]:
    """(label, value) per attribute, in order; parses the message at most once.

    Raises MissingMessageData when an attribute needs bytes the view lacks.
    """
    return list(zip([item.label() for item in attributes], render_values(attributes, view), strict=True))


def render_values(attributes: tuple[FetchAttribute, ...], view: MessageView) -> list[Value]:
    """`render_fetch` without the labels (a FETCH computes them once for all its messages)."""
    msg = ParsedMessage(view)
    return [render_value(item, msg) for item in attributes]


def fetch_list(pairs: list[tuple[bytes, Value]]) -> List:
    """The parenthesised FETCH data: (label value label value ...)."""
    items: list[Value] = []
    for label, value in pairs:
        items.append(Raw(label))
        items.append(value)
    return List(tuple(items))


def fetch_response(seq: int, labels: list[bytes], values: list[Value]) -> list[bytes]:
    """The untagged "* seq FETCH (...)" line in pieces: what `fetch_list` + `encode_into`
    give, without building the List first."""
    out = [b"* %d FETCH (" % seq]
    first = True
    for label, value in zip(labels, values, strict=True):
        out.append(label + b" " if first else b" " + label + b" ")
        first = False
        encode_into(value, out)
    out.append(b")\r\n")
    return out


# How FetchPlan writes an attribute: through render_value + encode_into, or straight to bytes.
_GENERAL: Final = 0
_FLAGS: Final = 1
_UID: Final = 2
_MODSEQ: Final = 3
_SIZE: Final = 4
_HEADER: Final = 5  # BODY[HEADER]<partial>, BODY.PEEK[HEADER]<partial>, RFC822.HEADER
_WHOLE: Final = 6  # BODY[] / BODY.PEEK[] without partial
_SIMPLE_WAYS: Final = {
    SimpleKind.FLAGS: _FLAGS,
    SimpleKind.UID: _UID,
    SimpleKind.MODSEQ: _MODSEQ,
    SimpleKind.RFC822_SIZE: _SIZE,
    SimpleKind.RFC822_HEADER: _HEADER,
}


def _way(item: FetchAttribute) -> int:
    if isinstance(item, SimpleItem):
        return _SIMPLE_WAYS.get(item.kind, _GENERAL)
    if isinstance(item, BodySection) and not item.section.part:
        if item.section.text is TextSpec.HEADER:
            return _HEADER
        if item.section.text is None and item.partial is None:
            return _WHOLE
    return _GENERAL


class FetchPlan:
    """One FETCH attribute list, worked out once: labels, what the store must send, and
    how each attribute is written. A session keeps the plan of the FETCH it last ran
    (clients send the same FETCH again and again); nothing in it depends on a message."""

    __slots__ = (
        "_steps",
        "attributes",
        "from_index",
        "labels",
        "needs",
        "needs_without_envelope",
        "sets_seen",
        "wants_envelope",
        "wants_flags",
    )

    def __init__(self, attributes: tuple[FetchAttribute, ...]) -> None:
        self.attributes = attributes
        self.labels = [a.label() for a in attributes]
        self.wants_flags = FLAGS in attributes
        self.wants_envelope = ENVELOPE in attributes
        self.from_index = from_index(attributes)
        self.sets_seen = sets_seen(attributes)
        self.needs = data_needs(attributes)
        # When every ENVELOPE comes from the session's cache, no header bytes are needed for it.
        self.needs_without_envelope = data_needs(a for a in attributes if a != ENVELOPE)
        self._steps = [
            (label + b" " if i == 0 else b" " + label + b" ", _way(item), item)
            for i, (label, item) in enumerate(zip(self.labels, attributes, strict=True))
        ]

    def response(self, seq: int, view: MessageView) -> list[bytes]:
        """The untagged "* seq FETCH (...)" line for `view`, in pieces: `fetch_response`
        of `render_values`, byte for byte. Raises what `render_value` raises."""
        msg = ParsedMessage(view)
        out = [b"* %d FETCH (" % seq]
        append = out.append
        for prefix, way, item in self._steps:
            append(prefix)
            if way == _FLAGS:
                flags = view.flags
                if view.recent and RECENT not in flags:
                    flags = (*flags, RECENT)
                append(b"(" + " ".join(flags).encode("ascii") + b")")
            elif way == _HEADER:
                data = msg.header()
                if isinstance(item, BodySection) and item.partial is not None:
                    data = apply_partial(data, item.partial)
                append(b"{%d}\r\n" % len(data))
                append(data)
            elif way == _WHOLE and view.chunks is not None:
                chunks = view.chunks
                append(b"{%d}\r\n" % sum(map(len, chunks)))
                out.extend(chunks)
            elif way == _UID:
                append(b"%d" % view.uid)
            elif way == _SIZE:
                append(b"%d" % view.size)
            elif way == _MODSEQ:
                append(b"(%d)" % view.modseq)
            else:
                encode_into(render_value(item, msg), out)
        append(b")\r\n")
        return out
