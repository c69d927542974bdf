"""The capability list, as advertised in each connection state."""

from __future__ import annotations

from typing import Final

_BASE: Final = (
    "IMAP4rev1",
    "IMAP4rev2",
    "LITERAL+",
    "SASL-IR",
    "ID",
    "ENABLE",
    "IDLE",
    "NAMESPACE",
    "UIDPLUS",
    "MOVE",
    "UNSELECT",
    "CHILDREN",
    "SPECIAL-USE",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "ESEARCH",
    "SEARCHRES",
    "SORT",
    "SORT=DISPLAY",
    "THREAD=ORDEREDSUBJECT",
    "THREAD=REFERENCES",
    "THREAD=REFS",
    "I18NLEVEL=1",
    "ESORT",
    "CONTEXT=SEARCH",
    "CONTEXT=SORT",
    "WITHIN",
    "STATUS=SIZE",
    "MULTIAPPEND",
    "CATENATE",
    "URL-PARTIAL",
    "BINARY",
    "CONDSTORE",
    "QRESYNC",
    "QUOTA",
    "SAVEDATE",
    "PREVIEW",
    "SNIPPET=FUZZY",
    "PREVIEW=FUZZY",
    "OBJECTID",
    "METADATA",  # RFC 5464, server and mailbox annotations (imapd/session/metadata_commands.py)
    # RFC 2221: LOGIN/AUTHENTICATE may answer with a [REFERRAL] code. None are configured, so none
    # are sent (as Dovecot, which advertises it the same way); a client must only be ready for one.
    "LOGIN-REFERRALS",
    "NOTIFY",  # RFC 5465 (imapd/session/notify_commands.py, imapd/account_hub.py)
)


def capabilities(
    *, append_limit: int, tls_active: bool, tls_available: bool, plaintext_ok: bool, authenticated: bool = False
) -> tuple[str, ...]:
    caps = [*_BASE, f"APPENDLIMIT={append_limit}"]
    if authenticated:
        caps.append("COMPRESS=DEFLATE")  # RFC 4978: only once the credentials are past
        caps.append("UTF8=ACCEPT")  # RFC 6855: ENABLE is only valid after login
    if tls_available and not tls_active:
        caps.append("STARTTLS")
    if tls_active or plaintext_ok:
        caps.append("AUTH=PLAIN")
    else:
        caps.append("LOGINDISABLED")
    return tuple(caps)


def capability_line(caps: tuple[str, ...]) -> bytes:
    return " ".join(caps).encode("ascii")
