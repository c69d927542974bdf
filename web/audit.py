"""Every web action, as a log line and in a bounded list the console shows."""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

log = logging.getLogger("mailha.web.audit")


@dataclass(frozen=True)
class AuditEntry:
    time: float
    actor: str  # the logged-in user ("-" before login)
    peer: str
    action: str  # e.g. "login", "password", "switchover"
    target: str  # what it acted on (a user name, a node)
    outcome: str  # "ok" or the refusal in a few words; never a password


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:300]


class AuditTrail:
    def __init__(self, keep: int = 1000) -> None:
        self._entries: deque[AuditEntry] = deque(maxlen=keep)

    def record(self, actor: str, peer: str, action: str, target: str, outcome: str) -> AuditEntry:
        # Form input ends up here (a user name tried at login): one line per entry, whatever was typed.
        actor, target, outcome = (_one_line(v) for v in (actor, target, outcome))
        entry = AuditEntry(time.time(), actor, peer, action, target, outcome)
        self._entries.append(entry)
        log.info("audit actor=%s peer=%s action=%s target=%s outcome=%s", actor, peer, action, target, outcome)
        return entry

    def recent(self, limit: int = 100, actor: str | None = None) -> list[AuditEntry]:
        rows = [e for e in reversed(self._entries) if actor is None or e.actor == actor]
        return rows[:limit]
