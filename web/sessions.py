"""Server-side web sessions and their CSRF tokens (in memory, bounded, expiring).

The cookie holds only a random token; what it grants (user, role) lives
here. Each session has its own CSRF token that every form carries; the
login form, before any session exists, uses a pre-login token kept in its
own cookie (double submit), so a cross-site form cannot log a browser in.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

COOKIE = "mailha_session"
LOGIN_COOKIE = "mailha_login"
MAX_SESSIONS = 10_000


@dataclass
class WebSession:
    token: str
    user: str
    admin: bool
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    created: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)


def same_token(given: str, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


class SessionStore:
    def __init__(self, idle_timeout: float = 3600.0, max_age: float = 12 * 3600.0) -> None:
        self.idle_timeout = idle_timeout
        self.max_age = max_age
        self._sessions: OrderedDict[str, WebSession] = OrderedDict()

    def create(self, user: str, admin: bool) -> WebSession:
        session = WebSession(secrets.token_urlsafe(32), user, admin)
        self._sessions[session.token] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def get(self, token: str | None) -> WebSession | None:
        if not token:
            return None
        session = self._sessions.get(token)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.last_seen > self.idle_timeout or now - session.created > self.max_age:
            self._sessions.pop(token, None)
            return None
        session.last_seen = now
        return session

    def end(self, token: str | None) -> None:
        if token:
            self._sessions.pop(token, None)

    def end_user(self, user: str) -> int:
        """End every session of `user` (password reset, disable); return how many."""
        doomed = [t for t, s in self._sessions.items() if s.user == user]
        for token in doomed:
            self._sessions.pop(token, None)
        return len(doomed)
