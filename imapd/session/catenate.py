"""CATENATE (RFC 4469): a message APPENDed from TEXT literals and IMAP URLs
(RFC 5092, with URL-PARTIAL RFC 5550) naming messages or parts in the
user's own mailboxes.

Each URL is one store fetch of one message (by UID, checked against the
URL's UIDVALIDITY; URLs into the same message in a row share it); the section
and partial range are cut from it as BODY[] would. The assembled size is checked against APPENDLIMIT as it grows, so a
client cannot make the server hold more than one message past the limit.
"""

from __future__ import annotations

from imapd.errors import StoreError
from imapd.message.sections import section_bytes
from imapd.protocol import commands as c
from imapd.protocol.imap_url import BadUrl, MessageUrl, parse_url
from imapd.session.list_match import canonical
from imapd.session.session import Session
from imapd.store_client import FetchRequest
from mailparse.mime_tree import parse_message


class CatenateRefused(Exception):
    """The tagged NO text (with its response code) for a CATENATE that cannot be built."""

    def __init__(self, text: bytes) -> None:
        super().__init__(text.decode("ascii", "replace"))
        self.text = text


def _bad_url(url: str) -> CatenateRefused:
    # url-resp-text: any TEXT-CHAR but "]" (RFC 4469 5); the URL is the client's own.
    text = url[:200].encode("utf-8", "replace").translate(None, b"]\r\n\x00")
    return CatenateRefused(b"[BADURL " + text + b"] Cannot use this URL")


class _LastMessage:
    """The message the previous URL fetched: URLs into one message in a row cost one store fetch."""

    def __init__(self) -> None:
        self.key: tuple[int, int] | None = None
        self.body = b""


async def assemble(s: Session, parts: tuple[c.CatenatePart, ...], limit: int) -> bytes:
    out: list[bytes] = []
    total = 0
    last = _LastMessage()
    for part in parts:
        data = part.data if isinstance(part, c.CatenateText) else await _resolve(s, part.url, last)
        total += len(data)
        if total > limit:
            raise CatenateRefused(b"[TOOBIG] The catenated message exceeds APPENDLIMIT")
        out.append(data)
    return b"".join(out)


async def _resolve(s: Session, url: str, last: _LastMessage) -> bytes:
    user = s.user
    assert user is not None
    try:
        ref = parse_url(url)
    except BadUrl:
        raise _bad_url(url) from None
    if ref.user is not None and ref.user != user:
        raise _bad_url(url)  # only the user's own mailboxes
    try:
        info = await s.ctx.store.status(user, canonical(ref.mailbox))  # "inbox" is INBOX, as in commands
    except StoreError:
        raise _bad_url(url) from None
    assert info.status is not None
    if ref.uidvalidity is not None and ref.uidvalidity != info.status.uidvalidity:
        raise _bad_url(url)
    body: bytes | None = None
    if last.key == (info.mailbox_id, ref.uid):
        body = last.body
    else:
        async for item in s.ctx.store.fetch(user, info.mailbox_id, FetchRequest(str(ref.uid), with_body=True)):
            if item.meta.uid == ref.uid:
                body = item.joined
        if body is None:
            raise _bad_url(url)
        last.key, last.body = (info.mailbox_id, ref.uid), body
    data = _cut(ref, body)
    if data is None:
        raise _bad_url(url)
    return data


def _cut(ref: MessageUrl, message: bytes) -> bytes | None:
    data: bytes | None = message
    if ref.section is not None:
        data = section_bytes(parse_message(message), ref.section)
    if data is None or ref.partial is None:
        return data
    offset, length = ref.partial
    # As BODY[]<partial>: a range past the end is empty, not an error (so does Dovecot).
    return data[offset:] if length is None else data[offset : offset + length]
