"""Validation and normalisation of user names, addresses, mailbox names and flags.

Every function returns the canonical form or raises InvalidArgument; nothing
here touches LMDB.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from store.errors import InvalidArgument, LimitExceeded

USER_RE = re.compile(r"[a-z0-9._-]{1,64}")
# local@domain: a pragmatic subset of RFC 5321 (what MTAs hand LMTP in practice).
ADDRESS_RE = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)
DELIMITER = "/"
MAX_MAILBOX_BYTES = 255

SYSTEM_FLAGS = {f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}
SPECIAL_USES = {s.lower(): s for s in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")}
# Bounds on keywords, so that flag lists (SELECT's FLAGS and PERMANENTFLAGS, every FETCH FLAGS)
# stay small: Dovecot's mail_max_keyword_length is 50, Cyrus allows 128 user flags per mailbox.
# 128 characters keeps every keyword Dovecot wrote importable.
MAX_KEYWORD_LENGTH = 128
MAX_KEYWORDS_PER_MAILBOX = 128
# IMAP atom-specials plus the backslash (only allowed as the first character of a system flag).
_KEYWORD_RE = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z^_`a-z|}~]+")


def shown(value: str, limit: int = 40) -> str:
    """A client's value in an error message, bounded (a 20,000-character keyword once
    overflowed the gRPC trailer and came back as the wrong error)."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"


def user_name(name: str) -> str:
    if not USER_RE.fullmatch(name):
        raise InvalidArgument(f"user name {name!r} is invalid: use 1-64 characters of a-z 0-9 . _ -")
    return name


def address(addr: str) -> str:
    canonical = addr.strip().lower()
    if len(canonical) > 254 or not ADDRESS_RE.fullmatch(canonical):
        raise InvalidArgument(f"address {addr!r} is invalid: expected local@domain")
    return canonical


def strip_tag(addr: str) -> str | None:
    """'user+tag@domain' -> 'user@domain'; None when there is no tag."""
    local, _, domain = addr.partition("@")
    base, plus, _tag = local.partition("+")
    if not plus or not base:
        return None
    return f"{base}@{domain}"


def mailbox_name(name: str) -> str:
    """Canonical mailbox name: INBOX (any case) as the first component becomes 'INBOX'."""
    if not name:
        raise InvalidArgument("mailbox name is empty")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_MAILBOX_BYTES:
        raise InvalidArgument(f"mailbox name is longer than {MAX_MAILBOX_BYTES} bytes")
    if any(ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF for c in name):
        raise InvalidArgument(f"mailbox name {name!r} contains control characters")
    if name.startswith(DELIMITER) or name.endswith(DELIMITER):
        raise InvalidArgument(f"mailbox name {name!r} must not start or end with {DELIMITER!r}")
    parts = name.split(DELIMITER)
    if any(p == "" for p in parts):
        raise InvalidArgument(f"mailbox name {name!r} has an empty hierarchy component")
    if any(c in name for c in "*%"):
        raise InvalidArgument(f"mailbox name {name!r} contains a LIST wildcard (* or %)")
    if parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    return DELIMITER.join(parts)


def parents(name: str) -> list[str]:
    """'a/b/c' -> ['a', 'a/b']."""
    parts = name.split(DELIMITER)
    return [DELIMITER.join(parts[:i]) for i in range(1, len(parts))]


def flag(value: str) -> str:
    """Canonical flag: system flags in their RFC 3501 spelling, keywords as given."""
    if value.startswith("\\"):
        canonical = SYSTEM_FLAGS.get(value.lower())
        if canonical is None:
            raise InvalidArgument(f"flag {shown(value)} is not a settable system flag (\\Recent is not settable)")
        return canonical
    if len(value) > MAX_KEYWORD_LENGTH:
        raise LimitExceeded(f"keyword of {len(value)} characters; at most {MAX_KEYWORD_LENGTH} are allowed")
    if not _KEYWORD_RE.fullmatch(value):
        raise InvalidArgument(f"flag {shown(value)} is not a valid IMAP keyword")
    return value


def flags(values: Iterable[str]) -> tuple[str, ...]:
    """Canonical, de-duplicated, sorted flags."""
    if isinstance(values, list | tuple) and len(values) == 1:
        return (flag(values[0]),)  # one flag (STORE +FLAGS \\Seen): no set, no sort
    return tuple(sorted({flag(v) for v in values}))


def special_use(value: str) -> str:
    if not value:
        return ""
    canonical = SPECIAL_USES.get(value.lower())
    if canonical is None:
        raise InvalidArgument(f"special-use {value!r} is unknown (one of {', '.join(sorted(SPECIAL_USES.values()))})")
    return canonical
