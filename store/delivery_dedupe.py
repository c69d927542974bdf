"""Exactly-once LMTP delivery: the delivery identities the store has appended.

An MTA that sent DATA and never saw the final reply (connection cut, node
killed after the commit) retries the whole transaction. lmtpd sends a
delivery identity with each recipient's append (a digest of the envelope
sender, the recipient and the message bytes: lmtpd.delivery_identity); the
append records it in the SAME LMDB write transaction as the message, so
after a crash either both exist or neither does. A later append with the
same identity for the same user, within the window, appends nothing and
answers with the first append's UID (marked duplicate): the MTA gets 250.

Two named databases, owned by this module only:
- `delivery_dedupe`: user \\0 identity -> recorded-at u64 (unix s), mailbox_id u64, uidvalidity u32, uid u32
- `delivery_dedupe_expiry`: recorded-at u64, user \\0 identity -> b"" (oldest first, for pruning)

Storage is bounded: every recording also deletes up to PRUNE_PER_WRITE
entries older than the window, so the tables hold about one window's worth
of deliveries.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import lmdb

DB_NAME = b"delivery_dedupe"
EXPIRY_DB_NAME = b"delivery_dedupe_expiry"
# Postfix's maximal_queue_lifetime is 5 days: a retry can come that late.
DEFAULT_WINDOW = 6 * 86400.0
IDENTITY_SIZE = 32
PRUNE_PER_WRITE = 16

_RECORD = struct.Struct(">QQII")
_TIME = struct.Struct(">Q")


@dataclass(frozen=True)
class Delivered:
    """What the first append of an identity answered."""

    recorded_at: int
    mailbox_id: int
    uidvalidity: int
    uid: int


def _key(user: str, identity: bytes) -> bytes:
    if len(identity) != IDENTITY_SIZE:
        raise ValueError(f"a delivery identity is {IDENTITY_SIZE} bytes, not {len(identity)}")
    return user.encode() + b"\0" + identity


class DeliveryDedupe:
    """The two tables of one environment, used inside the caller's write transaction."""

    def __init__(self, env: lmdb.Environment, window: float = DEFAULT_WINDOW) -> None:
        if window <= 0:
            raise ValueError("the delivery dedupe window must be positive")
        self.window = window
        self.bind(env)

    def bind(self, env: lmdb.Environment) -> None:
        """Open (or create) the two tables in `env`; again after the store reopened it."""
        with env.begin(write=True) as txn:
            self.db = env.open_db(DB_NAME, txn=txn, create=True)
            self.expiry = env.open_db(EXPIRY_DB_NAME, txn=txn, create=True)

    def seen(self, txn: lmdb.Transaction, user: str, identity: bytes, now: float) -> Delivered | None:
        """The earlier delivery of `identity` to `user`, if within the window."""
        raw = txn.get(_key(user, identity), db=self.db)
        if raw is None:
            return None
        found = Delivered(*_RECORD.unpack(bytes(raw)))
        if found.recorded_at + self.window < now:
            return None  # expired (not pruned yet): a genuinely new delivery
        return found

    def record(self, txn: lmdb.Transaction, user: str, identity: bytes, now: float, delivered: Delivered) -> None:
        """Remember a delivery (call after its append, in the same transaction)."""
        key = _key(user, identity)
        old = txn.get(key, db=self.db)
        if old is not None:
            txn.delete(_TIME.pack(_RECORD.unpack(bytes(old))[0]) + key, db=self.expiry)
        txn.put(
            key,
            _RECORD.pack(delivered.recorded_at, delivered.mailbox_id, delivered.uidvalidity, delivered.uid),
            db=self.db,
        )
        txn.put(_TIME.pack(delivered.recorded_at) + key, b"", db=self.expiry)
        self.prune(txn, now)

    def prune(self, txn: lmdb.Transaction, now: float, limit: int = PRUNE_PER_WRITE) -> int:
        """Delete up to `limit` entries recorded before the window; how many went."""
        horizon = now - self.window
        doomed: list[bytes] = []
        cursor = txn.cursor(db=self.expiry)
        for raw_key, _ in cursor:
            key = bytes(raw_key)
            if _TIME.unpack_from(key)[0] >= horizon or len(doomed) >= limit:
                break
            doomed.append(key)
        for key in doomed:
            txn.delete(key, db=self.expiry)
            txn.delete(key[_TIME.size :], db=self.db)
        return len(doomed)

    def count(self, txn: lmdb.Transaction) -> int:
        return int(txn.stat(self.db)["entries"])
