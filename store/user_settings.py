"""Per-user settings (forwarding, blocked sender domains, spam action, role).

LMDB operations only, in the caller's transaction. Settings are one record
per user (the UserSettings message, serialized); validation lives here so
every writer (web page, CLI, tests) gets the same rules. The delivery log is
store/delivery_log.py.
"""

from __future__ import annotations

import hashlib
import re

import lmdb

from mailha_api import settings_pb2
from store import names
from store.errors import Aborted, InvalidArgument
from store.schema import Dbs
from store.users import require_user

MAX_BLOCKED_DOMAINS = 10
REVISION_SIZE = 16
_DOMAIN_RE = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


def domain(value: str) -> str:
    """A sender domain as stored: lower case, no trailing dot; InvalidArgument otherwise."""
    canonical = value.strip().lower().rstrip(".")
    if not _DOMAIN_RE.fullmatch(canonical):
        raise InvalidArgument(f"{value!r} is not a domain name (like example.com)")
    return canonical


def validated(settings: settings_pb2.UserSettings) -> settings_pb2.UserSettings:
    out = settings_pb2.UserSettings()
    out.CopyFrom(settings)
    out.revision = b""  # output only: never stored
    names.user_name(out.user)
    if out.forward_to:
        out.forward_to = names.address(out.forward_to.strip())
    domains: list[str] = []
    for d in out.blocked_domains:
        canonical = domain(d)
        if canonical not in domains:
            domains.append(canonical)
    if len(domains) > MAX_BLOCKED_DOMAINS:
        raise InvalidArgument(f"at most {MAX_BLOCKED_DOMAINS} blocked domains (got {len(domains)})")
    del out.blocked_domains[:]
    out.blocked_domains.extend(domains)
    if out.spam_action not in settings_pb2.SpamAction.values():
        raise InvalidArgument(f"unknown spam action {out.spam_action}")
    if out.block_action not in settings_pb2.BlockAction.values():
        raise InvalidArgument(f"unknown block action {out.block_action}")
    return out


def get(txn: lmdb.Transaction, dbs: Dbs, user: str) -> settings_pb2.UserSettings:
    """The user's settings (defaults when none were saved); NotFound for an unknown user."""
    require_user(txn, dbs, user)
    raw = txn.get(user.encode(), db=dbs.user_settings)
    settings = settings_pb2.UserSettings()
    if raw is not None:
        settings.ParseFromString(bytes(raw))
    settings.user = user
    settings.revision = _revision(raw)
    return settings


def _revision(raw: bytes | memoryview | None) -> bytes:
    return hashlib.sha256(b"" if raw is None else bytes(raw)).digest()[:REVISION_SIZE]


def require_revision(txn: lmdb.Transaction, dbs: Dbs, user: str, revision: bytes) -> None:
    """Aborted unless the user's stored settings are still those `revision` was read from
    (call before any write of the transaction: an append decided on them)."""
    if _revision(txn.get(user.encode(), db=dbs.user_settings)) != revision:
        raise Aborted(f"settings: {user}'s settings changed during the delivery; nothing was stored, try again")


def put(txn: lmdb.Transaction, dbs: Dbs, settings: settings_pb2.UserSettings) -> settings_pb2.UserSettings:
    clean = validated(settings)
    require_user(txn, dbs, clean.user)
    raw = clean.SerializeToString()
    txn.put(clean.user.encode(), raw, db=dbs.user_settings)
    clean.revision = _revision(raw)  # what GetSettings answers from now on
    return clean


def disabled(txn: lmdb.Transaction, dbs: Dbs, user: str) -> bool:
    raw = txn.get(user.encode(), db=dbs.user_settings)
    if raw is None:
        return False
    return settings_pb2.UserSettings.FromString(bytes(raw)).disabled
