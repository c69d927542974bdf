"""LMTP replies: the value type, its wire form, and the catalogue lmtpd uses.

Enhanced status codes (RFC 3463, advertised as ENHANCEDSTATUSCODES per
RFC 2034) go on every reply except the greeting and the LHLO reply, which
RFC 2034 exempts. Keeping every reply text in this one module means the
mapping from domain outcome to protocol answer is reviewable in one place.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from lmtpd.delivery import Outcome


@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]
    enhanced: str = ""

    @property
    def positive(self) -> bool:
        """2xx (done) or 3xx (go ahead)."""
        return 200 <= self.code < 400

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    def to_bytes(self) -> bytes:
        return self._wire

    @functools.cached_property
    def _wire(self) -> bytes:
        # Made once per reply: most replies are the module's constants, sent once per delivery.
        prefix = f"{self.enhanced} " if self.enhanced else ""
        out: list[str] = []
        last = len(self.lines) - 1
        for i, line in enumerate(self.lines):
            sep = " " if i == last else "-"
            # The enhanced code leads the first line only; continuation lines of
            # LHLO carry keywords, which must not be prefixed.
            out.append(f"{self.code}{sep}{prefix if i == 0 else ''}{line}\r\n")
        return "".join(out).encode("utf-8")


def reply(code: int, enhanced: str, text: str) -> Reply:
    return Reply(code, (text,), enhanced)


def greeting(hostname: str) -> Reply:
    return Reply(220, (f"{hostname} LMTP mailha ready",))


def lhlo_ok(hostname: str, max_message_size: int) -> Reply:
    return Reply(
        250,
        (hostname, "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", f"SIZE {max_message_size}"),
    )


OK_MAIL = reply(250, "2.1.0", "Sender ok")
OK_RCPT = reply(250, "2.1.5", "Recipient ok")
OK_RSET = reply(250, "2.0.0", "Ok")
OK_NOOP = reply(250, "2.0.0", "Ok")
GO_AHEAD = reply(354, "", "Start mail input; end with <CRLF>.<CRLF>")
BYE = reply(221, "2.0.0", "Bye")
VRFY_CANNOT = reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")

BAD_SEQUENCE = reply(503, "5.5.1", "Bad sequence of commands")
NO_VALID_RECIPIENTS = reply(503, "5.5.1", "No valid recipients")
NEED_LHLO = reply(503, "5.5.1", "Send LHLO first")
UNKNOWN_COMMAND = reply(500, "5.5.2", "Command unrecognized")
USE_LHLO = reply(500, "5.5.1", "This is LMTP; use LHLO")
NOT_IMPLEMENTED = reply(502, "5.5.1", "Command not implemented")
LINE_TOO_LONG = reply(500, "5.5.2", "Line too long")
NESTED_MAIL = reply(503, "5.5.1", "Sender already specified")
TOO_MANY_RECIPIENTS = reply(452, "4.5.3", "Too many recipients")


def syntax_error(what: str) -> Reply:
    return reply(501, "5.5.4", f"Syntax error in {what}")


def unsupported_parameter(name: str) -> Reply:
    return reply(555, "5.5.4", f"Unsupported parameter {name}")


def too_big_announced(max_message_size: int) -> Reply:
    return reply(552, "5.3.4", f"Message size exceeds fixed limit of {max_message_size} bytes")


def too_big(max_message_size: int) -> Reply:
    return reply(552, "5.3.4", f"Message too big for system (limit {max_message_size} bytes)")


def no_such_user(address: str) -> Reply:
    return reply(550, "5.1.1", f"<{address}>: no such user")


def bad_address(address: str) -> Reply:
    return reply(501, "5.1.3", f"<{address}>: bad address syntax")


def over_quota(address: str, *, temporary: bool) -> Reply:
    if temporary:
        return reply(452, "4.2.2", f"<{address}>: mailbox full")
    return reply(552, "5.2.2", f"<{address}>: mailbox full")


def try_later(reason: str) -> Reply:
    return reply(451, "4.3.0", f"Temporary failure: {reason}")


def delivered(address: str, uid: int) -> Reply:
    return reply(250, "2.0.0", f"<{address}> delivered (uid {uid})")


def delivery_failed(address: str, reason: str) -> Reply:
    # Temporary: a store failure (an I/O error, a bug) says nothing about the
    # message or the recipient, so the MTA keeps the mail and retries instead
    # of bouncing it (found by the chaos storage-full scenario: EIO on commit).
    return reply(451, "4.3.0", f"<{address}>: temporary local error, try again later: {reason}")


def too_many_connections() -> Reply:
    return reply(421, "4.3.2", "Too many connections, try again later")


def idle_timeout() -> Reply:
    return reply(421, "4.4.2", "Idle timeout, closing connection")


def for_resolution(outcome: Outcome, address: str, *, quota_tempfail: bool) -> Reply:
    """The RCPT reply for a recipient lookup."""
    if outcome is Outcome.DELIVERED:
        return OK_RCPT
    return for_outcome(outcome, address, uid=0, quota_tempfail=quota_tempfail)


def for_outcome(outcome: Outcome, address: str, *, uid: int, quota_tempfail: bool) -> Reply:
    """The one mapping of delivery outcomes to LMTP replies."""
    if outcome is Outcome.DELIVERED:
        return delivered(address, uid)
    if outcome is Outcome.NO_SUCH_USER:
        return no_such_user(address)
    if outcome is Outcome.BAD_ADDRESS:
        return bad_address(address)
    if outcome is Outcome.OVER_QUOTA:
        return over_quota(address, temporary=quota_tempfail)
    if outcome is Outcome.TOO_BIG:
        return reply(552, "5.3.4", f"<{address}>: message too big for this mailbox")
    if outcome is Outcome.FENCED:
        return try_later("this server is no longer the active writer")
    if outcome is Outcome.UNAVAILABLE:
        return try_later("mail store unavailable")
    if outcome is Outcome.STORAGE_FULL:
        return reply(452, "4.3.1", f"<{address}>: insufficient system storage, try again later")
    if outcome is Outcome.SETTINGS_CHANGED:
        return try_later("the recipient's settings changed during the delivery")
    if outcome is Outcome.REFUSED_BY_RECIPIENT:
        return reply(550, "5.7.1", f"<{address}>: the recipient does not accept mail from this sender")
    return delivery_failed(address, "internal error")
