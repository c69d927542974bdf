"""Per-user settings (forwarding, blocked sender domains, spam action, role) and the delivery log.

LMDB operations only, in the caller's transaction. Settings are one record
per user (the UserSettings message, serialized); validation lives here so
every writer (web page, CLI, tests) gets the same rules. The delivery log is
keyed by a big-endian sequence number and trimmed to `LOG_LIMIT` records, the
oldest first.
"""

from __future__ import annotations

import re

import lmdb

from mailha_api import settings_pb2
from store import names
from store.errors import InvalidArgument
from store.schema import U64, Dbs
from store.users import require_user

MAX_BLOCKED_DOMAINS = 10
LOG_LIMIT = 20_000
SEARCH_LIMIT = 100
# Records are appended in time order (give or take lmtpd clocks a little apart): a search with a
# lower time bound stops this far past it instead of reading the whole log.
CLOCK_SLACK_MS = 60_000
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
    return settings


def put(txn: lmdb.Transaction, dbs: Dbs, settings: settings_pb2.UserSettings) -> settings_pb2.UserSettings:
    clean = validated(settings)
    require_user(txn, dbs, clean.user)
    txn.put(clean.user.encode(), clean.SerializeToString(), db=dbs.user_settings)
    return clean


def disabled(txn: lmdb.Transaction, dbs: Dbs, user: str) -> bool:
    raw = txn.get(user.encode(), db=dbs.user_settings)
    if raw is None:
        return False
    return settings_pb2.UserSettings.FromString(bytes(raw)).disabled


# ---- the delivery log ------------------------------------------------------


def record(txn: lmdb.Transaction, dbs: Dbs, records: list[settings_pb2.DeliveryRecord], limit: int = LOG_LIMIT) -> int:
    """Append records (assigning seq), trim to `limit`; return how many the log now holds."""
    cur = txn.cursor(db=dbs.delivery_log)
    seq = U64.unpack(bytes(cur.key()))[0] if cur.last() else 0
    for entry in records:
        seq += 1
        entry.seq = seq
        txn.put(U64.pack(seq), entry.SerializeToString(), db=dbs.delivery_log)
    kept = int(txn.stat(dbs.delivery_log)["entries"])
    if kept > limit:
        cur = txn.cursor(db=dbs.delivery_log)
        cur.first()
        for _ in range(kept - limit):
            cur.delete()
        kept = limit
    return kept


def matches(entry: settings_pb2.DeliveryRecord, query: settings_pb2.SearchDeliveriesRequest) -> bool:
    if query.user and entry.user != query.user:
        return False
    if query.address:
        needle = query.address.lower()
        if needle not in entry.sender.lower() and needle not in entry.recipient.lower():
            return False
    if query.message_id and query.message_id.lower() not in entry.message_id.lower():
        return False
    if query.since_ms and entry.time_ms < query.since_ms:
        return False
    return not (query.until_ms and entry.time_ms > query.until_ms)


def search(
    txn: lmdb.Transaction, dbs: Dbs, query: settings_pb2.SearchDeliveriesRequest
) -> list[settings_pb2.DeliveryRecord]:
    """Newest first, at most query.limit (default SEARCH_LIMIT) records."""
    limit = query.limit or SEARCH_LIMIT
    out: list[settings_pb2.DeliveryRecord] = []
    cur = txn.cursor(db=dbs.delivery_log)
    if not cur.last():
        return out
    for value in cur.iterprev(keys=False, values=True):
        entry = settings_pb2.DeliveryRecord.FromString(bytes(value))
        if query.since_ms and entry.time_ms < query.since_ms - CLOCK_SLACK_MS:
            break  # records are appended in time order: nothing older can match
        if matches(entry, query):
            out.append(entry)
            if len(out) >= limit:
                break
    return out
