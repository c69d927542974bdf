"""Our FETCH output read back by a real client's parser (imapclient's response_parser)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from imapclient.response_parser import parse_fetch_response

from imapd.message.fetch_render import fetch_list, render_fetch
from imapd.protocol import fetch_spec as F
from imapd.protocol.values import encode
from mailparse.headers import field_matcher, first_values
from mailparse.mime_tree import parse_message
from mailparse.view import MessageView

CORPUS = Path(__file__).parent / "data" / "mime"
_LITERAL = re.compile(rb"\{(\d+)\}\r\n")


def as_imaplib_lines(wire: bytes) -> list[bytes | tuple[bytes, bytes]]:
    """Split a response at its literals the way imaplib hands responses to imapclient."""
    out: list[bytes | tuple[bytes, bytes]] = []
    pos = 0
    while True:
        m = _LITERAL.search(wire, pos)
        if m is None:
            out.append(wire[pos:])
            return out
        size = int(m.group(1))
        out.append((wire[pos : m.start()] + b"{%d}" % size, wire[m.end() : m.end() + size]))
        pos = m.end() + size


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.eml")), ids=lambda p: p.name)
def test_imapclient_reads_our_fetch_response(path: Path) -> None:
    data = path.read_bytes()
    view = MessageView(
        uid=9, modseq=4, flags=("\\Seen",), internal_date=0, tz_offset_minutes=0, size=len(data), chunks=(data,)
    )
    attrs = (F.UID, F.FLAGS, F.ENVELOPE, F.BODYSTRUCTURE, F.BodySection(F.Section((1,)), peek=True), F.RFC822_SIZE)
    wire = b"3 " + encode(fetch_list(render_fetch(attrs, view)))
    parsed = parse_fetch_response(as_imaplib_lines(wire))[9]
    assert parsed[b"SEQ"] == 3
    assert parsed[b"FLAGS"] == (b"\\Seen",)
    assert parsed[b"RFC822.SIZE"] == len(data)
    header = data[: len(data) - len(parse_message(data).body)]
    assert parsed[b"ENVELOPE"].subject == first_values(header, field_matcher(frozenset({b"subject"}))).get(b"subject")
    root = parse_message(data)
    structure = parsed[b"BODYSTRUCTURE"]
    assert structure.is_multipart == bool(root.children)
    if root.children:
        assert len(structure[0]) == len(root.children)
    assert parsed[b"BODY[1]"] == (root.children[0] if root.children else root).body
