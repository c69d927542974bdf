"""Differences from Dovecot that are accepted, each with its reason.

Keep it short: fix the difference instead when mailha is wrong. An entry whose
step no longer differs fails the test (stale entries do not accumulate).
"""

from __future__ import annotations

import re
from typing import Final

# Untagged lines mailha may send where Dovecot sends none (pattern, reason).
EXTRA_LINES: Final[tuple[tuple[re.Pattern[bytes], str], ...]] = (
    (
        re.compile(rb"^\* OK \[HIGHESTMODSEQ"),
        "RFC 7162 3.1.2.1: a server with persistent mod-sequences MUST send HIGHESTMODSEQ on every "
        "SELECT/EXAMINE; Dovecot sends it only once the client enabled CONDSTORE",
    ),
    (
        re.compile(rb"^\* OK \[MAILBOXID \("),
        "RFC 8474 4.2: a server with OBJECTID sends MAILBOXID on SELECT/EXAMINE; Dovecot 2.3 has no OBJECTID",
    ),
)

# Response codes mailha adds to a tagged NO where Dovecot gives none (RFC 5530 codes are optional),
# and MAILBOXID on the OK of CREATE (RFC 8474 4.1; Dovecot 2.3 has no OBJECTID).
EXTRA_CODES: Final = frozenset({b"NONEXISTENT", b"CANNOT", b"MAILBOXID"})

_PARENT: Final = "CREATE parent/child creates `parent` in mailha (RFC 3501 6.3.3 lets a server create the \
superior names); Dovecot's maildir has no `parent` (\\NonExistent)"

_UNKNOWN_CTE: Final = "BINARY of a part in an unknown Content-Transfer-Encoding: both answer NO [UNKNOWN-CTE] \
(RFC 3516 4.1); Dovecot also sends '* n FETCH (UID n)' before it, mailha no FETCH data"
_BINARY_SECTION: Final = "BINARY[1.MIME] / BINARY[HEADER]: RFC 3516's section-binary is a part number only, \
mailha answers BAD; Dovecot serves them like BODY[...]"

# (conversation, step) -> reason.
ALLOWED: Final[dict[tuple[str, int], str]] = {
    ("notify", 2): "RFC 5465 8: BADEVENT lists the events the server supports, in parentheses "
    "(unsupported-events-code); Dovecot names the refused event without parentheses",
    ("notify", 8): "the first notification after NOTIFY SET STATUS: Dovecot repeats the STATUS of a mailbox "
    "that did not change (Other, already in the SET STATUS answer); RFC 5465 5.1/5.2 report changes",
    ("notify", 23): "RENAME of a mailbox in the watched subtree: mailha sends LIST with OLDNAME (RFC 5465 5.4); "
    "Dovecot's maildir notices no rename and sends nothing",
    ("notify", 25): "DELETE of the renamed mailbox: mailha reports the name that was deleted (Proj/Two); Dovecot, "
    "which missed the rename, now reports the old name Proj/One as \\NonExistent",
    ("append-and-fetch", 22): "BINARY[2] of a single-part message (no part 2): Dovecot sends an empty literal, "
    "mailha NIL; RFC 3516 does not say",
    ("binary", 13): _UNKNOWN_CTE,
    ("binary", 14): _UNKNOWN_CTE,
    ("binary", 19): _BINARY_SECTION,
    ("binary", 20): _BINARY_SECTION,
    ("store-and-search", 34): "NO [BADCHARSET] may list the supported charsets (RFC 3501 7.1); mailha does",
    ("searchres", 22): "NO [BADCHARSET] may list the supported charsets (RFC 3501 7.1); mailha does",
    ("sort-and-thread", 25): "NO [BADCHARSET] may list the supported charsets (RFC 3501 7.1); mailha does",
    ("sort-and-thread", 37): "an empty THREAD result: Dovecot sends '* THREAD ' with a trailing space, mailha "
    "'* THREAD' as RFC 5256's grammar has it (thread-data = \"THREAD\" [SP 1*thread-list])",
    ("two-sessions", 12): "FETCH of a message another session expunged, before the EXPUNGE is announced: "
    "Dovecot still serves it, mailha answers NO [EXPUNGEISSUED] (RFC 2180 4.1.1 vs 4.1.2; imapd/SERVER.md)",
    ("condstore-qresync", 16): "once CONDSTORE is enabled mailha sends MODSEQ with every FETCH of FLAGS "
    "(issue 11 item 4, RFC 7162 3.1 'all subsequent untagged FETCH responses'); Dovecot only in unsolicited ones",
    ("odd-inputs", 3): "Dovecot disconnects after 3 bad commands before login, mailha after 10 in any state "
    "(imapd abuse limits)",
    ("odd-inputs-selected", 8): "SELECT INBOX extra: Dovecot ignores the trailing argument, mailha answers BAD "
    "as RFC 3501's grammar has no such argument",
    ("list-extended-corners", 8): _PARENT,
    ("list-extended-corners", 11): _PARENT,
    ("list-extended-corners", 13): _PARENT,
}
