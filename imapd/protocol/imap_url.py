"""IMAP URLs (RFC 5092) naming one message or part, as CATENATE (RFC 4469) uses
them, with URL-PARTIAL (RFC 5550).

Accepted forms: the path "/mailbox[;UIDVALIDITY=v]/;UID=u[/;SECTION=s][/;PARTIAL=o[.l]]"
(the leading "/" may be left out: relative to this server), and the same after
"imap://[user[;AUTH=...]@]host[:port]". Mailbox and
section are %-encoded UTF-8. ";URLAUTH=" (RFC 4467) is refused: this server
has no URLAUTH. Every error is a `BadUrl` (answered NO [BADURL "url"]); the
length of what is parsed is bounded by the command line limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote_to_bytes

from imapd.protocol import fetch_spec as fs
from imapd.protocol.errors import ParseError
from imapd.protocol.fetch_grammar import section_spec

MAX_URL: Final = 2048
_SERVER: Final = re.compile(r"(?i)imap://(?:(?P<user>[^@/;]*)(?:;AUTH=[^@/]*)?@)?(?P<host>[^/]*)")
_NUMBER: Final = re.compile(r"[0-9]{1,10}")


class BadUrl(ValueError):
    """Not a URL this server can resolve (RFC 4469: NO [BADURL "url"])."""


@dataclass(frozen=True, slots=True)
class MessageUrl:
    mailbox: str
    uid: int
    uidvalidity: int | None = None
    section: fs.Section | None = None
    partial: tuple[int, int | None] | None = None  # (offset, length or None: to the end)
    user: str | None = None  # from an absolute URL


def parse_url(url: str) -> MessageUrl:
    if len(url) > MAX_URL:
        raise BadUrl("URL too long")
    user: str | None = None
    rest = url
    m = _SERVER.match(url)
    if m is not None:
        user = _decode(m.group("user")) if m.group("user") else None
        rest = url[m.end() :]
    elif url[:1] != "/":
        rest = "/" + url  # a relative path, resolved against this server's root (RFC 3986 5.2)
    if not rest.startswith("/"):
        raise BadUrl("no mailbox")
    pieces = rest[1:].split("/")
    mailbox_part, *params = pieces
    mailbox_enc, _, validity = mailbox_part.partition(";")
    mailbox = _decode(mailbox_enc)
    if not mailbox:
        raise BadUrl("no mailbox")
    uidvalidity = None
    if validity:
        name, _, value = validity.partition("=")
        if name.upper() != "UIDVALIDITY":
            raise BadUrl("unknown mailbox parameter")
        uidvalidity = _nz(value)
    fields: dict[str, str] = {}
    for param in params:
        # ";UID=1;SECTION=2" without the slash (RFC 2192 style) is read too.
        for item in param.split(";")[1:] if param.startswith(";") else [param]:
            name, eq, value = item.partition("=")
            key = name.upper()
            if not eq or key in fields or key not in ("UID", "SECTION", "PARTIAL", "URLAUTH", "EXPIRE"):
                raise BadUrl("unknown or repeated URL parameter")
            fields[key] = value
    if "URLAUTH" in fields or "EXPIRE" in fields:
        raise BadUrl("URLAUTH is not supported")
    if "UID" not in fields:
        raise BadUrl("the URL names no message")
    section = None
    if "SECTION" in fields:
        try:
            section = section_spec(unquote_to_bytes(fields["SECTION"]))
        except ParseError:
            raise BadUrl("invalid section") from None
    partial = None
    if "PARTIAL" in fields:
        offset, dot, length = fields["PARTIAL"].partition(".")
        partial = (_number(offset), _nz(length) if dot else None)
    return MessageUrl(mailbox, _nz(fields["UID"]), uidvalidity, section, partial, user)


def _decode(text: str) -> str:
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise BadUrl("mailbox is not UTF-8") from None


def _number(text: str) -> int:
    if not _NUMBER.fullmatch(text):
        raise BadUrl("invalid number")
    value = int(text)
    if value > 0xFFFFFFFF:
        raise BadUrl("number out of range")
    return value


def _nz(text: str) -> int:
    value = _number(text)
    if value == 0:
        raise BadUrl("zero where a positive number is needed")
    return value
