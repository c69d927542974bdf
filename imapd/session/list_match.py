"""LIST pattern matching: "*" matches anything, "%" anything but the delimiter."""

from __future__ import annotations

import re
from functools import lru_cache

DELIMITER = "/"


def canonical(name: str) -> str:
    return "INBOX" if name.upper() == "INBOX" else name


def join_reference(reference: str, pattern: str) -> str:
    if not reference or pattern.startswith(DELIMITER):
        return pattern
    # RFC 3501 6.3.8: the reference is prefixed as is (a trailing "/" is the client's).
    return reference + pattern


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            out.append(re.escape(ch))
    regex = "".join(out)
    # INBOX is case-insensitive wherever it leads the name.
    if pattern[:5].upper() == "INBOX":
        regex = "(?i:INBOX)" + "".join(out[5:])
    return re.compile(regex, re.DOTALL)


def matches(pattern: str, name: str) -> bool:
    return _compile(pattern).fullmatch(name) is not None
