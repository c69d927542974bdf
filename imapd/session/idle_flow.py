"""IDLE (RFC 2177): push changes as the feed delivers them, keepalive while
quiet, log out after the IDLE timeout. The server reads the client's DONE
while `pump` runs in the connection's nursery.
"""

from __future__ import annotations

import trio

from imapd.account_hub import AccountSubscription
from imapd.protocol import commands as c
from imapd.session.selected import SelectedMailbox
from imapd.session.session import Outcome, Session
from imapd.watch_hub import Subscription


async def idle(s: Session, tag: str, cmd: c.Idle) -> Outcome:
    s.idle_tag = tag
    s.emit(b"+ idling\r\n")
    return Outcome.IDLING


async def pump(s: Session, *, task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED) -> None:
    settings = s.ctx.settings
    with trio.CancelScope() as scope:
        task_status.started(scope)
        deadline = trio.current_time() + settings.idle_timeout
        while True:
            # DONE may cancel a context update's store search (what it queued stays queued and goes out
            # before DONE's OK; the rest is retried), never a write in the middle of a response line.
            alive = await s.emit_updates(allow_expunge=True)
            with trio.CancelScope(shield=True):
                await s.flush()
            if not alive:
                s.wire.request_close()
                return
            now = trio.current_time()
            if now >= deadline:
                await s.wire.send(b"* BYE [UNAVAILABLE] IDLE timed out, autologout\r\n")
                s.wire.request_close()
                return
            with trio.move_on_at(min(deadline, now + settings.idle_keepalive)) as waited:
                await _next_event(s)
            if waited.cancelled_caught and trio.current_time() < deadline:
                with trio.CancelScope(shield=True):
                    await s.wire.send(b"* OK Still here\r\n")


async def _next_event(s: Session) -> None:
    """Wait for the selected mailbox's feed or the NOTIFY account feed, whichever speaks first,
    and take that one event in."""
    async with trio.open_nursery() as nursery:
        sub, sel = s.subscription, s.selected
        if sub is not None and sel is not None:
            nursery.start_soon(_from_mailbox, s, sub, sel, nursery.cancel_scope)
        if s.notify_feed is not None:
            nursery.start_soon(_from_account, s, s.notify_feed, nursery.cancel_scope)
        if (sub is None or sel is None) and s.notify_feed is None:
            await trio.sleep_forever()


async def _from_mailbox(s: Session, sub: Subscription, sel: SelectedMailbox, done: trio.CancelScope) -> None:
    try:
        s.take_event(await sub.receive.receive())
    except (trio.EndOfChannel, trio.ClosedResourceError):
        sel.gone = True
    done.cancel()


async def _from_account(s: Session, feed: AccountSubscription, done: trio.CancelScope) -> None:
    try:
        event = await feed.receive.receive()
    except (trio.EndOfChannel, trio.ClosedResourceError):
        if s.notify is not None:
            s.notify.overflowed = True
    else:
        if s.notify is not None and not feed.stale:  # (stale: the pump resyncs next)
            s.notify.take(event, s.selected.mailbox_id if s.selected is not None else None)
    done.cancel()


async def done(s: Session, tag: str) -> Outcome:
    s.idle_tag = None
    s.tagged(tag, b"OK", b"IDLE terminated")
    return await s.finish_followup(tag, Outcome.CONTINUE)
