"""Commands of any state and of the not-authenticated state (RFC 3501 6.1, 6.2)."""

from __future__ import annotations

import trio

from imapd.errors import StoreError, StoreErrorKind
from imapd.protocol import commands as c
from imapd.protocol.states import Transition
from imapd.session.abuse_limits import PenaltyKeys
from imapd.session.auth_log import log_failed_auth
from imapd.session.error_map import Context, reply_for
from imapd.session.session import Outcome, Session


async def capability(s: Session, tag: str, cmd: c.Capability) -> Outcome:
    s.emit(b"* CAPABILITY " + b" ".join(x.encode() for x in s.capability_list()) + b"\r\n")
    s.tagged(tag, b"OK", b"CAPABILITY completed")
    return Outcome.CONTINUE


async def noop(s: Session, tag: str, cmd: c.Noop | c.Check) -> Outcome:
    s.tagged(tag, b"OK", b"NOOP completed" if isinstance(cmd, c.Noop) else b"CHECK completed")
    return Outcome.CONTINUE


async def logout(s: Session, tag: str, cmd: c.Logout) -> Outcome:
    s.emit(b"* BYE Logging out\r\n")
    s.tagged(tag, b"OK", b"LOGOUT completed")
    s.transition(Transition.LOGGED_OUT)
    return Outcome.CLOSE


async def id_(s: Session, tag: str, cmd: c.Id) -> Outcome:
    s.emit(b'* ID ("name" "mailha" "vendor" "mailha")\r\n')
    s.tagged(tag, b"OK", b"ID completed")
    return Outcome.CONTINUE


async def compress(s: Session, tag: str, cmd: c.Compress) -> Outcome:
    """COMPRESS DEFLATE (RFC 4978): the OK goes out uncompressed, then the server wraps the stream."""
    if cmd.mechanism != "DEFLATE":
        s.tagged(tag, b"BAD", b"Unknown compression mechanism")
        return Outcome.CONTINUE
    if s.compressed:
        s.tagged(tag, b"NO", b"[COMPRESSIONACTIVE] DEFLATE is already active")
        return Outcome.CONTINUE
    s.compressed = True
    s.tagged(tag, b"OK", b"DEFLATE active")
    return Outcome.START_COMPRESS


async def starttls(s: Session, tag: str, cmd: c.StartTls) -> Outcome:
    if s.wire.tls_active or not s.ctx.settings.tls_available:
        s.tagged(tag, b"BAD", b"TLS is not available on this connection")
        return Outcome.CONTINUE
    s.tagged(tag, b"OK", b"Begin TLS negotiation now")
    return Outcome.START_TLS


def _plaintext_refused(s: Session, tag: str) -> bool:
    if s.wire.tls_active or s.ctx.settings.allow_plaintext_login:
        return False
    s.tagged(tag, b"NO", b"[PRIVACYREQUIRED] Use STARTTLS or the TLS port before logging in")
    return True


async def _log_in(s: Session, tag: str, name: str, password: str, mechanism: str) -> Outcome:
    throttle = s.ctx.throttle
    keys = PenaltyKeys.of(s.wire.peer, name)
    # Parallel connections share the penalty: wait for this attempt's turn.
    wait = throttle.reserve(keys)
    if wait is None:
        log_failed_auth(name, mechanism, s.wire.peer, throttled=True)
        s.bad_commands += 1
        s.tagged(tag, b"NO", b"[UNAVAILABLE] Too many failed logins; try again later")
        return Outcome.CONTINUE
    if wait:
        await trio.sleep(wait)
    try:
        user = await s.ctx.store.authenticate(name, password)
    except StoreError as exc:
        if exc.kind is not StoreErrorKind.UNAUTHENTICATED:
            raise
        log_failed_auth(name, mechanism, s.wire.peer)
        # Slow down guessing from this address and of this user, more with each failure.
        await trio.sleep(throttle.failed(keys))
        s.bad_commands += 1
        s.tagged(tag, *_split(reply_for(exc, Context.LOGIN).text))
        return Outcome.CONTINUE
    throttle.succeeded(keys)
    if not s.ctx.cap.acquire(user):
        s.tagged(tag, b"NO", b"[LIMIT] Too many connections for this user")
        return Outcome.CONTINUE
    s.user = user
    s.transition(Transition.AUTHENTICATED)
    s.tagged(tag, b"OK", s.capability_code() + b" Logged in")
    return Outcome.CONTINUE


def _split(text: bytes) -> tuple[bytes, bytes]:
    return b"NO", text


async def login(s: Session, tag: str, cmd: c.Login) -> Outcome:
    if _plaintext_refused(s, tag):
        return Outcome.CONTINUE
    return await _log_in(s, tag, cmd.userid, cmd.password, "LOGIN")


async def authenticate(s: Session, tag: str, cmd: c.Authenticate) -> Outcome:
    if cmd.mechanism.upper() != "PLAIN":
        s.tagged(tag, b"NO", b"[CANNOT] Unsupported authentication mechanism")
        return Outcome.CONTINUE
    if _plaintext_refused(s, tag):
        return Outcome.CONTINUE
    if cmd.initial_response is None:
        s.pending_auth_tag = tag
        s.emit(b"+ \r\n")
        return Outcome.AWAIT_AUTH
    return await _plain(s, tag, cmd.initial_response)


async def auth_response(s: Session, tag: str, data: bytes | None) -> Outcome:
    """The client's answer to our "+ " during AUTHENTICATE (None = "*", cancel)."""
    s.pending_auth_tag = None
    if data is None:
        s.tagged(tag, b"BAD", b"AUTHENTICATE cancelled")
        outcome = Outcome.CONTINUE
    else:
        outcome = await _plain(s, tag, data)
    return await s.finish_followup(tag, outcome)


async def _plain(s: Session, tag: str, data: bytes) -> Outcome:
    # RFC 4616: [authzid] NUL authcid NUL passwd
    parts = data.split(b"\x00")
    if len(parts) != 3:
        s.tagged(tag, b"BAD", b"Malformed PLAIN response")
        return Outcome.CONTINUE
    authzid, authcid, password = (p.decode("utf-8", "replace") for p in parts)
    if authzid and authzid != authcid:
        s.tagged(tag, b"NO", b"[AUTHORIZATIONFAILED] Proxy authorization is not supported")
        return Outcome.CONTINUE
    return await _log_in(s, tag, authcid, password, "PLAIN")
