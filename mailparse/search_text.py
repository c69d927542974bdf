"""The decoded, casefolded text that SEARCH TEXT and BODY look into.

One definition for the message-by-message evaluator (`search_eval`) and for
the store's full-text index, which must give the same answers: RFC 2047 words
decoded in headers, quoted-printable/base64 and the part's charset decoded in
bodies, folding removed from the top-level header so a phrase split by
folding still matches.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

from mailparse.decoding import decode_charset, decode_header_value, decode_transfer
from mailparse.mime_tree import Part
from mailparse.view import ParsedMessage

_FOLD: Final = re.compile(rb"\r?\n(?=[ \t])")


def header_text(parsed: ParsedMessage) -> str:
    """The top-level header, unfolded and decoded (TEXT looks here)."""
    unfolded = _FOLD.sub(b"", parsed.header())
    return decode_header_value(unfolded).casefold()


def mime_header_text(parsed: ParsedMessage) -> str:
    """Decoded headers of the body parts (the body of the message holds them, so TEXT sees them)."""
    root = parsed.tree()
    headers = [decode_header_value(p.header) for p in _descendants(root) if p is not root]
    return "\n".join(headers).casefold()


def body_text(parsed: ParsedMessage) -> str:
    """Decoded text of every text part (BODY and TEXT look here)."""
    return "\n".join(_texts(parsed.tree())).casefold()


def _texts(part: Part) -> Iterator[str]:
    """Decoded text of every text leaf; embedded messages add their decoded header."""
    if part.children:
        for child in part.children:
            yield from _texts(child)
        return
    if part.message is not None:
        yield decode_header_value(part.message.header)
        yield from _texts(part.message)
        return
    if part.content_type.main in (b"TEXT", b"MESSAGE"):
        raw = decode_transfer(part.body, part.encoding)
        yield decode_charset(raw, part.content_type.param(b"CHARSET"))


def _descendants(part: Part) -> Iterator[Part]:
    yield part
    for child in part.children:
        yield from _descendants(child)
    if part.message is not None:
        yield from _descendants(part.message)
