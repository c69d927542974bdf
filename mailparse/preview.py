"""The preview of a message (RFC 8970 PREVIEW, Dovecot's SNIPPET/PREVIEW=FUZZY).

Computed once, when the store receives the message (store/message_facts.py),
from its first bytes: the first text/plain or text/html leaf (embedded
messages included), transfer encoding and charset decoded, HTML reduced to its
text (no tags, no style or script, entities decoded), then as Dovecot's
message-snippet: lines starting with ">" (quoted) are left out, whitespace runs
become one space, at most PREVIEW_CHARS characters. A message that is all
quotes gets ">" and its quoted text. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Final

from mailparse.decoding import decode_charset, decode_transfer
from mailparse.mime_tree import Part, parse_message

PREVIEW_CHARS: Final = 200  # RFC 8970 allows up to 256; Dovecot gives 200
SOURCE_LIMIT: Final = 256 * 1024  # bytes of the message looked at: bounded CPU per append
_TEXT_LIMIT: Final = 64 * 1024  # characters of the chosen part looked at
_SKIPPED_ELEMENTS: Final = frozenset({"style", "script", "head", "title"})
_BLOCK_ELEMENTS: Final = frozenset({"p", "br", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"})


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_ELEMENTS:
            self._skipping += 1
        elif tag in _BLOCK_ELEMENTS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_ELEMENTS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK_ELEMENTS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(html[:_TEXT_LIMIT])
    # No close(): a construct cut by the limit stays unparsed instead of showing as text.
    return "".join(parser.parts)


def _text_leaves(part: Part) -> Iterator[Part]:
    if part.children:
        for child in part.children:
            yield from _text_leaves(child)
    elif part.message is not None:
        yield from _text_leaves(part.message)
    elif part.content_type.main == b"TEXT" and part.content_type.sub in (b"PLAIN", b"HTML"):
        yield part


def snippet(text: str, limit: int = PREVIEW_CHARS) -> str:
    """Unquoted lines with whitespace collapsed; ">" + the quoted ones when there are no others."""
    plain: list[str] = []
    quoted: list[str] = []
    size = 0
    for line in text[:_TEXT_LIMIT].splitlines():
        if line.startswith(">"):
            if size == 0:
                quoted.extend(line[1:].split())
            continue
        words = line.split()
        plain.extend(words)
        size += sum(len(w) + 1 for w in words)
        if size > limit:
            break
    if plain:
        return " ".join(plain)[:limit]
    return (">" + " ".join(quoted))[:limit] if quoted else ""


def preview_text(message: bytes) -> str:
    """The preview of a message from (at least) its first SOURCE_LIMIT bytes; "" when it has no text."""
    root = parse_message(message[:SOURCE_LIMIT])
    leaf = next(_text_leaves(root), None)
    if leaf is None:
        return ""
    text = decode_charset(decode_transfer(leaf.body, leaf.encoding), leaf.content_type.param(b"CHARSET"))
    if leaf.content_type.sub == b"HTML":
        text = html_text(text)
    return snippet(text)
