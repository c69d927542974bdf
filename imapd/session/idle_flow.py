"""IDLE (RFC 2177): push changes as the feed delivers them, keepalive while
quiet, log out after the IDLE timeout. The server reads the client's DONE
while `pump` runs in the connection's nursery.
"""

from __future__ import annotations

import trio

from imapd.protocol import commands as c
from imapd.session.session import Outcome, Session


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
                sub, sel = s.subscription, s.selected
                if sub is None or sel is None:
                    await trio.sleep_forever()
                try:
                    s.take_event(await sub.receive.receive())
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    sel.gone = True
            if waited.cancelled_caught and trio.current_time() < deadline:
                with trio.CancelScope(shield=True):
                    await s.wire.send(b"* OK Still here\r\n")


async def done(s: Session, tag: str) -> Outcome:
    s.idle_tag = None
    s.tagged(tag, b"OK", b"IDLE terminated")
    return await s.finish_followup(tag, Outcome.CONTINUE)
