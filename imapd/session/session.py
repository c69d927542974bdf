"""One IMAP connection's session: state, selected mailbox, output, dispatch.

The server feeds it parsed commands (`handle`) and the APPEND / IDLE /
AUTHENTICATE follow-up events; the session answers through `Wire`. Handlers
live in the *_commands modules and are found through one table keyed by
command class. A store failure is turned into a response by error_map, any
other exception into "NO [SERVERBUG]": the connection always lives on.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol

import trio

from imapd.account_hub import AccountSubscription
from imapd.errors import StoreError
from imapd.message.fetch_render import FetchPlan
from imapd.protocol import commands as c
from imapd.protocol.mutf7 import UndecodableName
from imapd.protocol.states import ConnectionState, Transition, is_valid, next_state
from imapd.session.capabilities import capabilities, capability_line
from imapd.session.context import ServerContext, Wire
from imapd.session.error_map import Context, reply_for
from imapd.session.list_match import canonical
from imapd.session.notify_state import NotifyState
from imapd.session.out_parts import Part, consume
from imapd.session.selected import SelectedMailbox
from imapd.store_client import ChangeEvent
from imapd.watch_hub import Subscription

log = logging.getLogger("imapd.session")

_FLUSH_AT: Final = 64 * 1024


class Outcome(enum.Enum):
    CONTINUE = "continue"
    START_TLS = "start-tls"  # the server upgrades the stream, then continues
    START_COMPRESS = "start-compress"  # the server wraps the stream in DEFLATE (RFC 4978), then continues
    CLOSE = "close"  # BYE was sent: the server closes the connection
    AWAIT_AUTH = "await-auth"  # the server reads one AUTHENTICATE line
    IDLING = "idling"  # the server reads until DONE


# EXPUNGE responses may not be sent while these run (RFC 3501 7.4.1); their
# UID forms allow it.
_NO_EXPUNGE: Final = (c.Fetch, c.Store, c.Search, c.Sort, c.Thread)

Handler = Callable[["Session", str, Any], Awaitable[Outcome]]


def _undecodable(command: c.Command) -> bool:
    """The command names a mailbox that is not valid modified UTF-7 (so cannot exist)."""
    if type(command) in _NAMELESS:
        return False
    return isinstance(getattr(command, "mailbox", None), UndecodableName) or isinstance(
        getattr(command, "new_name", None), UndecodableName
    )


# Command classes without a mailbox name (NOOP, FETCH, SEARCH...): `_undecodable` skips them.
_NAMELESS: Final = frozenset(
    cls
    for cls in vars(c).values()
    if isinstance(cls, type)
    and dataclasses.is_dataclass(cls)
    and not {"mailbox", "new_name"} & {f.name for f in dataclasses.fields(cls)}
)


class Notifier(Protocol):
    """What the session calls of NOTIFY (imapd.session.notify_commands) while sending updates."""

    async def emit(self, session: Session) -> None:
        """Queue the notifications pending for mailboxes other than the selected one."""

    async def fetch_new(self, session: Session, uids: list[int]) -> None:
        """MessageNew's fetch-att for the selected mailbox's new messages (after their EXISTS)."""


class WritingInto:
    """`Session.writing_into`: counts an APPEND/COPY on the session's subscription while it
    runs (a class: @contextmanager cost about ten Python calls a command, issue 13)."""

    __slots__ = ("_sub", "claims")

    def __init__(self, claims: bool, sub: Subscription | None) -> None:
        self.claims = claims  # mail added to that mailbox is \Recent here (`claims_own_recent`)
        self._sub = sub

    def __enter__(self) -> WritingInto:
        if self._sub is not None:
            self._sub.writing += 1
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sub is not None:
            self._sub.writing -= 1


class Session:
    def __init__(
        self,
        ctx: ServerContext,
        wire: Wire,
        handlers: Mapping[type, Handler],
        refresh_contexts: Callable[[Session], Awaitable[None]],
    ) -> None:
        self.ctx = ctx
        self.wire = wire
        # Handed in (imapd.session.dispatch): the command modules import this one.
        self.handlers = handlers
        self.refresh_contexts = refresh_contexts
        self.last_status = b""  # OK/NO/BAD of the latest tagged reply (metrics)
        self.state = ConnectionState.NOT_AUTHENTICATED
        self.user: str | None = None
        self.selected: SelectedMailbox | None = None
        self.subscription: Subscription | None = None
        # NOTIFY (RFC 5465): what was asked for and the account feed it reads (notify_commands)
        self.notify: NotifyState | None = None
        self.notify_feed: AccountSubscription | None = None
        # Mailboxes whose UIDVALIDITY a NOTIFY STATUS already gave (across NOTIFY SETs)
        self.notify_validity_told: set[str] = set()
        # Set with NOTIFY by notify_commands (which imports this module, not the other way round).
        self.notifier: Notifier | None = None
        self.enabled: set[str] = set()
        self.bad_commands = 0
        self.compressed = False  # COMPRESS DEFLATE is on (RFC 4978)
        self._out: list[bytes] = []
        # What a partial write left of the queued output (sent before anything queued since).
        self._rest: list[Part] = []
        self._out_size = 0
        # follow-ups of multi-step commands
        self.pending_auth_tag: str | None = None
        self.idle_tag: str | None = None
        self.idle_cancel: trio.CancelScope | None = None
        # The FETCH this session ran last, with CONDSTORE on or off, and its plan
        # (message_commands): clients repeat the same FETCH, and the parser the same command.
        self.fetch_plan: tuple[c.Fetch, bool, FetchPlan] | None = None

    # ---- output ---------------------------------------------------------------
    def emit(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)

    def emit_parts(self, parts: list[bytes]) -> bool:
        """Queue one response given in pieces (as `encode_into` makes them): joined when
        small, kept apart when it carries a big literal (written with the rest in one
        writev, never joined). True when a flush is due."""
        size = sum(map(len, parts))
        if size < _FLUSH_AT:
            self._out.append(b"".join(parts))
        else:
            self._out.extend(parts)
        self._out_size += size
        return self._out_size >= _FLUSH_AT

    async def maybe_flush(self) -> None:
        if self._out_size >= _FLUSH_AT:
            await self.flush()

    def _flush_now(self) -> bool:
        """Write the queued output at once, in one writev, when the socket takes it whole
        (a command's usual reply); False when `flush` must send (the rest of) it."""
        out = self._out
        if self._rest:
            return False
        if not out:
            return True
        sent = self.wire.send_now(out)
        if sent == self._out_size:
            out.clear()
            self._out_size = 0
            return True
        rest: list[Part] = list(out)
        consume(rest, sent)
        self._rest, self._out, self._out_size = rest, [], 0
        return False

    async def flush(self) -> None:
        if self._flush_now():
            return
        parts = [*self._rest, *self._out]
        self._rest, self._out, self._out_size = [], [], 0
        await self.wire.send_parts(parts)

    def drop_tagged(self, tag: str) -> None:
        """Take back the tagged line just queued for an internal `tag` (NOTIFY's FETCH)."""
        if self._out and self._out[-1].startswith(tag.encode("ascii") + b" "):
            self._out_size -= len(self._out.pop())

    def tagged(self, tag: str, status: bytes, text: bytes) -> None:
        self.last_status = status
        line = tag.encode("ascii") + b" " + status + b" " + text + b"\r\n"
        self._out.append(line)  # (emit, inlined: every command ends here)
        self._out_size += len(line)

    def transition(self, event: Transition) -> None:
        self.state = next_state(self.state, event)

    def capability_list(self) -> tuple[str, ...]:
        s = self.ctx.settings
        return capabilities(
            append_limit=s.append_limit,
            tls_active=self.wire.tls_active,
            tls_available=s.tls_available,
            plaintext_ok=s.allow_plaintext_login,
            authenticated=self.state is not ConnectionState.NOT_AUTHENTICATED,
        )

    @property
    def rev2(self) -> bool:
        """ENABLE IMAP4rev2 (RFC 9051) was given: rev2 responses from now on."""
        return "IMAP4rev2" in self.enabled

    @property
    def utf8_names(self) -> bool:
        """Mailbox names are UTF-8 both ways: UTF8=ACCEPT (RFC 6855) or IMAP4rev2 (RFC 9051 5.1)."""
        return "UTF8=ACCEPT" in self.enabled or self.rev2

    def capability_code(self) -> bytes:
        return b"[CAPABILITY " + capability_line(self.capability_list()) + b"]"

    # ---- change feed ------------------------------------------------------------
    def absorb_events(self) -> None:
        """Take whatever the feed delivered so far (never waits); nothing while the
        subscription is stale (`resync_selected` first)."""
        sub, sel = self.subscription, self.selected
        if sub is None or sel is None or sub.stale or sub.sent == sub.found_empty_at:
            return
        while True:
            try:
                event = sub.receive.receive_nowait()
            except trio.WouldBlock:
                sub.found_empty_at = sub.sent
                return
            except (trio.EndOfChannel, trio.ClosedResourceError):
                sel.gone = True
                return
            self.take_event(event)

    def take_event(self, event: ChangeEvent) -> None:
        """One feed event into the selected mailbox, with the \\Recent claims the hub made for us."""
        sub, sel = self.subscription, self.selected
        if sub is None or sel is None or sub.stale:
            return  # (stale: the event is committed, so the resync's catch-up holds it)
        self._take(sub, sel, event)

    async def resync_selected(self) -> None:
        """The feed dropped events for this session (it fell behind a fast-changing mailbox):
        take what changed since the session's modseq from the store, as one event, before
        anything else the feed sends. On a store failure the session keeps its (older,
        consistent) view and tries again at its next command."""
        sub, sel = self.subscription, self.selected
        if sub is None or sel is None or not sub.stale:
            return
        try:
            event = await self.ctx.hub.resync(sub, sel.modseq)
        except StoreError as exc:
            log.warning("resynchronising mailbox %d failed: %s", sel.mailbox_id, exc.kind.value)
            return
        if event is None:
            sel.gone = True
        else:
            self._take(sub, sel, event)

    @staticmethod
    def _take(sub: Subscription, sel: SelectedMailbox, event: ChangeEvent) -> None:
        sel.absorb(event)
        if sub.recent and sel.no_recent:
            sub.recent.clear()  # claimed before ENABLE IMAP4rev2: shown to nobody
        if sub.recent:
            sel.recent.update(u for u in sub.recent if sel.holds(u))
            sub.recent.clear()

    async def emit_updates(self, *, allow_expunge: bool) -> bool:
        """Queue pending untagged updates; False if the mailbox vanished (BYE sent)."""
        alive = await self._emit_selected_updates(allow_expunge=allow_expunge)
        if alive and self.notifier is not None:
            await self.notifier.emit(self)
        return alive

    async def _emit_selected_updates(self, *, allow_expunge: bool) -> bool:
        sel = self.selected
        if sel is None:
            return True
        if self.subscription is not None and self.subscription.stale:
            await self.resync_selected()
        self.absorb_events()
        new_uids = sorted(sel.pending_added) if self.notify is not None and not sel.gone else []
        lines = sel.flush(allow_expunge=allow_expunge)
        if lines:  # as `emit` each, in two calls
            self._out.extend(lines)
            self._out_size += sum(map(len, lines))
        if new_uids and self.notifier is not None:
            await self.notifier.fetch_new(self, new_uids)
        if sel.contexts and sel.touched and not sel.gone:
            await self.refresh_contexts(self)  # ADDTO/REMOVEFROM after the EXISTS and FETCH they follow
        if sel.gone and allow_expunge:
            if self.subscription is not None and self.subscription.failed:
                self.emit(b"* BYE [UNAVAILABLE] Lost the mailbox's change feed; please reconnect\r\n")
            else:
                self.emit(b"* BYE [UNAVAILABLE] Selected mailbox was deleted or renamed\r\n")
            return False
        return True

    def committed(self, mailbox_id: int, *, modseq: int = 0, uid: int = 0) -> None:
        """This session's write to a mailbox succeeded: its peers here must see it by their next command."""
        assert self.user is not None
        self.ctx.hub.committed(self.user, mailbox_id, modseq=modseq, uid=uid, writer=self.subscription)
        self.ctx.hub.accounts.committed(self.user, mailbox_id=mailbox_id, modseq=modseq, uid=uid)

    def claims_own_recent(self, name: str) -> bool:
        """Mail this session adds to `name` is \\Recent here: `name` is selected read-write."""
        sel = self.selected
        return sel is not None and not sel.read_only and canonical(name) == sel.name

    def writing_into(self, name: str) -> WritingInto:
        """Around APPEND/COPY into the selected mailbox: the hub then leaves the new mail's
        \\Recent to this session (claimed by `claim_own_recent`), whatever arrives first."""
        claims = self.claims_own_recent(name)
        return WritingInto(claims, self.subscription if claims else None)

    async def claim_own_recent(self, uids: tuple[int, ...], claimed: tuple[int, int] | None = None) -> None:
        """Mail this session added to its own read-write mailbox is \\Recent here (as in Dovecot).

        `claimed`: the range the store already claimed with the append itself (one commit, no call)."""
        sel = self.selected
        if sel is None or sel.read_only or sel.no_recent or not uids or self.user is None:
            return
        if claimed is None:
            claimed = await self.ctx.store.claim_recent(self.user, sel.mailbox_id, max(uids) + 1)
        low, high = claimed
        self.ctx.hub.recent_claimed(self.user, sel.mailbox_id, high)
        for uid in uids:
            if low <= uid < high:
                sel.recent.add(uid)

    def leave_mailbox(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None
        self.selected = None

    # ---- dispatch ---------------------------------------------------------------
    async def handle(self, tag: str, command: c.Command) -> Outcome:
        if not is_valid(command, self.state):
            self.tagged(tag, b"BAD", b"Command not allowed in this state")
            self.bad_commands += 1
            return await self._finish(tag, Outcome.CONTINUE, updates=False)
        if _undecodable(command):
            cannot = isinstance(command, c.Create) or (
                isinstance(command, c.Rename) and isinstance(command.new_name, UndecodableName)
            )
            self.tagged(tag, b"NO", b"[CANNOT] Invalid mailbox name" if cannot else b"[NONEXISTENT] No such mailbox")
            return await self._finish(tag, Outcome.CONTINUE, updates=True)
        handler = self.handlers[type(command)]
        # Command names only: arguments may hold passwords or message text. The level is
        # tested first: the arguments cost a property call per command even with it off.
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s", self.wire.peer, type(command).__name__)
        sub = self.subscription
        if sub is not None:
            if (sub.must_reach_modseq or sub.must_reach_uid) and self.ctx.hub.behind(sub):
                await self.ctx.hub.catch_up(sub)
            if sub.stale:
                await self.resync_selected()
            self.absorb_events()
        if self.notify_feed is not None and self.notify_feed.promised:
            await self.ctx.hub.accounts.catch_up(self.notify_feed)
        try:
            outcome = await handler(self, tag, command)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            raise  # the client went away: the server ends the connection quietly
        except StoreError as exc:
            context = Context.APPEND_OR_COPY if isinstance(command, c.Copy | c.Move | c.Append) else Context.GENERAL
            outcome = self.store_failed(tag, exc, context)
        except trio.Cancelled:
            raise
        except Exception:
            log.exception("handler for %s failed", type(command).__name__)
            self.tagged(tag, b"NO", b"[SERVERBUG] Internal error; the connection stays usable")
            outcome = Outcome.CONTINUE
        if (
            outcome is Outcome.CONTINUE
            and self.notify is None
            and (self.selected is None or self._selected_quiet())
            and self._flush_now()
        ):
            return outcome  # nothing to announce and the reply went out whole: `_finish` without its coroutine
        allow = not (isinstance(command, _NO_EXPUNGE) and not getattr(command, "uid", False))
        return await self._finish(tag, outcome, updates=outcome is Outcome.CONTINUE, allow_expunge=allow)

    def _selected_quiet(self) -> bool:
        """The feed and the selected mailbox hold nothing to announce (most commands):
        `emit_updates` can be skipped."""
        self.absorb_events()
        sel, sub = self.selected, self.subscription
        return sel is not None and sel.quiet and not (sub is not None and sub.stale)

    def store_failed(self, tag: str, exc: StoreError, context: Context) -> Outcome:
        reply = reply_for(exc, context)
        self.tagged(tag, reply.status, reply.text)
        if reply.fenced:
            self.ctx.fenced.set()
        return Outcome.CONTINUE

    async def _finish(self, tag: str, outcome: Outcome, *, updates: bool, allow_expunge: bool = True) -> Outcome:
        # Untagged updates go before the tagged line: take it off, add them, put it back.
        if (
            updates
            and (self.notify is not None or (self.selected is not None and not self._selected_quiet()))
            and self._out
            and self._out[-1].startswith(tag.encode() + b" ")
        ):
            last = self._out.pop()
            self._out_size -= len(last)
            alive = await self.emit_updates(allow_expunge=allow_expunge)
            self.emit(last)
            if not alive:
                outcome = Outcome.CLOSE
        if not self._flush_now():
            await self.flush()
        return outcome

    async def finish_followup(self, tag: str, outcome: Outcome) -> Outcome:
        """End an APPEND/IDLE/AUTHENTICATE follow-up like a command: updates, tagged line, flush."""
        return await self._finish(tag, outcome, updates=outcome is Outcome.CONTINUE)

    async def close(self) -> None:
        """Release what the session holds (connection gone)."""
        self.leave_mailbox()
        if self.notify_feed is not None:
            self.notify_feed.close()
        self.notify, self.notify_feed, self.notifier = None, None, None
        if self.user is not None:
            self.ctx.cap.release(self.user)
            self.user = None
