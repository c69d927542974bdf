"""The one log line per failed authentication, in a form fail2ban matches.

    imapd.auth INFO authentication failed: user=<bob>, method=PLAIN, rip=192.0.2.7

contrib/fail2ban/filter.d/mailha.conf holds the matching filter; a test runs
its failregex against this very line. The user name is the client's text,
made printable and bounded (it cannot forge a second field or line); the
password is never logged.
"""

from __future__ import annotations

import logging
from typing import Final

log = logging.getLogger("imapd.auth")

_MAX_USER: Final = 64


def printable_user(name: str) -> str:
    shown = "".join(c if " " < c <= "~" and c not in "<>" else "?" for c in name[:_MAX_USER])
    return shown + ("..." if len(name) > _MAX_USER else "")


def log_failed_auth(user: str, mechanism: str, address: str, *, throttled: bool = False) -> None:
    log.info(
        "authentication failed: user=<%s>, method=%s, rip=%s%s",
        printable_user(user),
        mechanism,
        address,
        " (throttled)" if throttled else "",
    )
