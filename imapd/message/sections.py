"""BODY[section] extraction (RFC 3501 6.4.5) on a MIME tree.

Part numbers walk `Part.numbered_children`: part 1 of a non-multipart
message is its body, the parts of a message/rfc822 part are those of the
embedded message. HEADER, TEXT and HEADER.FIELDS(.NOT) after a part number
need that part to be a message/rfc822; MIME needs a part number. A section
that does not exist yields None (answered as NIL).
"""

from __future__ import annotations

from imapd.protocol.fetch_spec import Partial, Section, TextSpec
from mailparse.headers import select_fields
from mailparse.mime_tree import Part


def resolve_part(root: Part, path: tuple[int, ...]) -> Part | None:
    node = root
    children = root.children or (root,)
    for number in path:
        if number < 1 or number > len(children):
            return None
        node = children[number - 1]
        children = node.numbered_children()
    return node


def header_section(header: bytes, section: Section) -> bytes:
    """HEADER / HEADER.FIELDS / HEADER.FIELDS.NOT of a header block."""
    if section.text is TextSpec.HEADER_FIELDS:
        return select_fields(header, section.fields, exclude=False)
    if section.text is TextSpec.HEADER_FIELDS_NOT:
        return select_fields(header, section.fields, exclude=True)
    return header


def section_bytes(root: Part, section: Section) -> bytes | None:
    """The bytes a BODY[section] (without partial) returns, or None when the section does not exist."""
    if not section.part:
        if section.text is None:
            return root.data[root.start : root.end]
        if section.text is TextSpec.TEXT:
            return root.body
        return header_section(root.header, section)
    part = resolve_part(root, section.part)
    if part is None:
        return None
    if section.text is None:
        return part.body
    if section.text is TextSpec.MIME:
        return part.header
    message = part.message
    if message is None:
        return None
    if section.text is TextSpec.TEXT:
        return message.body
    return header_section(message.header, section)


def apply_partial(data: bytes, partial: Partial | None) -> bytes:
    if partial is None:
        return data
    return data[partial.origin : partial.origin + partial.octets]


def slice_chunks(chunks: tuple[bytes, ...], origin: int, octets: int) -> tuple[bytes, ...]:
    """The bytes [origin, origin+octets) of a chunked body, without joining the chunks."""
    out: list[bytes] = []
    pos = 0
    stop = origin + octets
    for chunk in chunks:
        lo, hi = pos, pos + len(chunk)
        pos = hi
        if hi <= origin or not chunk:
            continue
        if lo >= stop:
            break
        out.append(chunk[max(origin - lo, 0) : min(stop, hi) - lo])
    return tuple(out)
