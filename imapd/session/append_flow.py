"""APPEND / MULTIAPPEND: the parser streams messages as events; we gather
each message (bounded by APPENDLIMIT, checked by the parser before any data
is read) and commit the whole command in one store call at AppendEnd.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from imapd.errors import StoreError
from imapd.protocol import commands as c
from imapd.session.error_map import Context
from imapd.session.keyword_limits import keyword_refusal
from imapd.session.session import Outcome, Session
from imapd.store_client import AppendResult, AppendSpec
from imapd.uid_set import format_uids


@dataclass
class AppendInProgress:
    tag: str
    mailbox: str
    messages: list[tuple[AppendSpec, bytes]] = field(default_factory=list)
    current: AppendSpec | None = None
    chunks: list[bytes] = field(default_factory=list)
    total: int = 0


def spec_for(flags: tuple[str, ...], when: datetime.datetime | None) -> AppendSpec:
    flags = tuple(f for f in flags if f.lower() != "\\recent")
    if when is None:
        return AppendSpec(flags)
    offset = when.utcoffset() or datetime.timedelta(0)
    return AppendSpec(flags, int(when.timestamp()), int(offset.total_seconds() // 60))


def begin(s: Session, tag: str, mailbox: str) -> AppendInProgress:
    return AppendInProgress(tag, mailbox)


def message_start(ap: AppendInProgress, flags: tuple[str, ...], when: datetime.datetime | None) -> None:
    ap.current = spec_for(flags, when)
    ap.chunks = []


def chunk(ap: AppendInProgress, data: bytes) -> None:
    ap.chunks.append(data)
    ap.total += len(data)


def message_end(ap: AppendInProgress) -> None:
    assert ap.current is not None
    ap.messages.append((ap.current, b"".join(ap.chunks)))
    ap.current, ap.chunks = None, []


async def _note(s: Session, result: AppendResult) -> None:
    if result.uids:
        s.committed(result.mailbox_id, uid=max(result.uids))
    if s.selected is not None and s.selected.mailbox_id == result.mailbox_id:
        s.selected.note_added(result.uids)
        await s.claim_own_recent(result.uids, result.recent)


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def commit(s: Session, ap: AppendInProgress) -> Outcome:
    """AppendEnd: one store call for the whole command, then the tagged answer."""
    assert s.user is not None
    refusal = keyword_refusal(f for spec, _ in ap.messages for f in spec.flags)
    if refusal is not None:
        s.tagged(ap.tag, b"NO", refusal)
        return await s.finish_followup(ap.tag, Outcome.CONTINUE)
    with s.writing_into(ap.mailbox):
        try:
            result: AppendResult
            if len(ap.messages) == 1:
                spec, data = ap.messages[0]
                claim = s.claims_own_recent(ap.mailbox)
                result = await s.ctx.store.append(s.user, ap.mailbox, spec, len(data), _one(data), claim_recent=claim)
            else:
                result = await s.ctx.store.multi_append(s.user, ap.mailbox, ap.messages)
        except StoreError as exc:
            s.store_failed(ap.tag, exc, Context.APPEND_OR_COPY)
            return await s.finish_followup(ap.tag, Outcome.CONTINUE)
        await _note(s, result)
    code = b"[APPENDUID %d %s]" % (result.uidvalidity, format_uids(result.uids).encode())
    s.tagged(ap.tag, b"OK", code + b" APPEND completed")
    return await s.finish_followup(ap.tag, Outcome.CONTINUE)


async def append_command(s: Session, tag: str, cmd: c.Append) -> Outcome:
    """The buffered form (parser not streaming): same path."""
    ap = begin(s, tag, cmd.mailbox)
    for msg in cmd.messages:
        message_start(ap, msg.flags, msg.internal_date)
        chunk(ap, msg.data)
        message_end(ap)
    assert s.user is not None
    refusal = keyword_refusal(f for spec, _ in ap.messages for f in spec.flags)
    if refusal is not None:
        s.tagged(tag, b"NO", refusal)
        return Outcome.CONTINUE
    with s.writing_into(ap.mailbox):
        if len(ap.messages) == 1:
            spec, data = ap.messages[0]
            claim = s.claims_own_recent(ap.mailbox)
            result = await s.ctx.store.append(s.user, ap.mailbox, spec, len(data), _one(data), claim_recent=claim)
        else:
            result = await s.ctx.store.multi_append(s.user, ap.mailbox, ap.messages)
        await _note(s, result)
    code = b"[APPENDUID %d %s]" % (result.uidvalidity, format_uids(result.uids).encode())
    s.tagged(tag, b"OK", code + b" APPEND completed")
    return Outcome.CONTINUE
