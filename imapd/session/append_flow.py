"""APPEND / MULTIAPPEND: the parser streams messages as events; we gather
each message (bounded by APPENDLIMIT, checked by the parser before any data
is read) and commit the whole command in one store call at AppendEnd.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from imapd.errors import StoreError
from imapd.message.binary_content import encode_binary_parts
from imapd.protocol import commands as c
from imapd.session import catenate
from imapd.session.error_map import Context
from imapd.session.keyword_limits import keyword_refusal
from imapd.session.session import Outcome, Session
from imapd.store_client import AppendResult, AppendSpec
from store.uidset import format_uids


@dataclass
class AppendInProgress:
    tag: str
    mailbox: str
    messages: list[tuple[AppendSpec, bytes]] = field(default_factory=list)
    current: AppendSpec | None = None
    current_binary: bool = False  # sent as literal8 (RFC 3516)
    chunks: list[bytes] = field(default_factory=list)
    total: int = 0
    refused: bytes | None = None  # the NO text when a message cannot be built (CATENATE)


def spec_for(flags: tuple[str, ...], when: datetime.datetime | None) -> AppendSpec:
    flags = tuple(f for f in flags if f.lower() != "\\recent")
    if when is None:
        return AppendSpec(flags)
    offset = when.utcoffset() or datetime.timedelta(0)
    return AppendSpec(flags, int(when.timestamp()), int(offset.total_seconds() // 60))


def begin(s: Session, tag: str, mailbox: str) -> AppendInProgress:
    return AppendInProgress(tag, mailbox)


def message_start(
    ap: AppendInProgress, flags: tuple[str, ...], when: datetime.datetime | None, binary: bool = False
) -> None:
    ap.current = spec_for(flags, when)
    ap.current_binary = binary
    ap.chunks = []


def chunk(ap: AppendInProgress, data: bytes) -> None:
    ap.chunks.append(data)
    ap.total += len(data)


def message_end(ap: AppendInProgress) -> None:
    assert ap.current is not None
    data = b"".join(ap.chunks)
    if ap.current_binary:
        data = encode_binary_parts(data)  # BODY[] may not carry NULs: binary parts are stored as base64
    ap.messages.append((ap.current, data))
    ap.current, ap.chunks = None, []


async def _note(s: Session, result: AppendResult) -> None:
    if result.uids:
        s.committed(result.mailbox_id, uid=max(result.uids))
    if s.selected is not None and s.selected.mailbox_id == result.mailbox_id:
        s.selected.note_added(result.uids)
        await s.claim_own_recent(result.uids, result.recent)


def _refusal(messages: list[tuple[AppendSpec, bytes]]) -> bytes | None:
    """The keyword bounds' refusal of the messages' flags (most APPENDs have none)."""
    if len(messages) == 1:
        flags = messages[0][0].flags
        return keyword_refusal(flags) if flags else None
    return keyword_refusal(f for spec, _ in messages for f in spec.flags)


def _appended(result: AppendResult) -> bytes:
    uids = result.uids
    listed = b"%d" % uids[0] if len(uids) == 1 else format_uids(uids).encode()
    return b"[APPENDUID %d %s] APPEND completed" % (result.uidvalidity, listed)


async def add_messages(s: Session, ap: AppendInProgress, messages: tuple[c.AppendMessage, ...]) -> None:
    """Messages read whole (the buffered APPEND, or what follows streamed ones): CATENATE ones are
    assembled here. A refusal is kept in `ap.refused` and answered at commit."""
    for msg in messages:
        if ap.refused is not None:
            return
        data, binary = msg.data, msg.binary
        if msg.catenate:
            try:
                data = await catenate.assemble(s, msg.catenate, s.ctx.settings.append_limit)
            except catenate.CatenateRefused as refused:
                ap.refused = refused.text
                return
            binary = b"\x00" in data  # a literal8 TEXT part (RFC 4469 6) made it binary
        message_start(ap, msg.flags, msg.internal_date, binary)
        chunk(ap, data)
        message_end(ap)
        if ap.total > s.ctx.settings.append_total_limit:
            ap.refused = b"[TOOBIG] The messages of this APPEND are too big together"


async def commit(s: Session, ap: AppendInProgress) -> Outcome:
    """AppendEnd: one store call for the whole command, then the tagged answer."""
    assert s.user is not None
    if ap.refused is not None:
        s.tagged(ap.tag, b"NO", ap.refused)
        return await s.finish_followup(ap.tag, Outcome.CONTINUE)
    refusal = _refusal(ap.messages)
    if refusal is not None:
        s.tagged(ap.tag, b"NO", refusal)
        return await s.finish_followup(ap.tag, Outcome.CONTINUE)
    with s.writing_into(ap.mailbox) as writing:
        try:
            result: AppendResult
            if len(ap.messages) == 1:
                spec, data = ap.messages[0]
                claim = writing.claims
                result = await s.ctx.store.append(s.user, ap.mailbox, spec, len(data), data, claim_recent=claim)
            else:
                result = await s.ctx.store.multi_append(s.user, ap.mailbox, ap.messages)
        except StoreError as exc:
            s.store_failed(ap.tag, exc, Context.APPEND_OR_COPY)
            return await s.finish_followup(ap.tag, Outcome.CONTINUE)
        await _note(s, result)
    s.tagged(ap.tag, b"OK", _appended(result))
    return await s.finish_followup(ap.tag, Outcome.CONTINUE)


async def append_command(s: Session, tag: str, cmd: c.Append) -> Outcome:
    """The buffered form (parser not streaming, or CATENATE): same path."""
    ap = begin(s, tag, cmd.mailbox)
    await add_messages(s, ap, cmd.messages)
    if ap.refused is not None:
        s.tagged(tag, b"NO", ap.refused)
        return Outcome.CONTINUE
    assert s.user is not None
    refusal = _refusal(ap.messages)
    if refusal is not None:
        s.tagged(tag, b"NO", refusal)
        return Outcome.CONTINUE
    with s.writing_into(ap.mailbox) as writing:
        if len(ap.messages) == 1:
            spec, data = ap.messages[0]
            result = await s.ctx.store.append(s.user, ap.mailbox, spec, len(data), data, claim_recent=writing.claims)
        else:
            result = await s.ctx.store.multi_append(s.user, ap.mailbox, ap.messages)
        await _note(s, result)
    s.tagged(tag, b"OK", _appended(result))
    return Outcome.CONTINUE
