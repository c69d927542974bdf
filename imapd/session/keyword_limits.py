"""Bounds on keywords, checked before a STORE or APPEND reaches the store.

The store is the authority (it also bounds the distinct keywords of a mailbox
and answers "limit: ..."); refusing here spares it a round trip and keeps an
oversized flag list off the wire. The values are the store's
(store/names.py: MAX_KEYWORD_LENGTH, MAX_KEYWORDS_PER_MAILBOX).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

MAX_KEYWORD_LENGTH: Final = 128
MAX_KEYWORDS_PER_COMMAND: Final = 128


def keyword_refusal(flags: Iterable[str]) -> bytes | None:
    """The "[LIMIT] ..." text when `flags` pass a bound, else None."""
    keywords = {f for f in flags if not f.startswith("\\")}
    if not keywords:
        return None  # system flags only (STORE +FLAGS \\Seen)
    longest = max((len(k) for k in keywords), default=0)
    if longest > MAX_KEYWORD_LENGTH:
        return b"[LIMIT] Keyword of %d characters; at most %d are allowed" % (longest, MAX_KEYWORD_LENGTH)
    if len(keywords) > MAX_KEYWORDS_PER_COMMAND:
        return b"[LIMIT] %d keywords; at most %d are allowed" % (len(keywords), MAX_KEYWORDS_PER_COMMAND)
    return None
