"""The records an append rewrites every time, read and written through one interface.

An append reads and rewrites its mailbox record, its user's quota record and
the `next_body_id` counter, and checks the writer epoch. Done directly on the
transaction that is four gets, three puts and (in the committer) a nested
transaction per append; each LMDB call also drops and retakes the GIL, which
under load is where the committer loses its time to the gRPC threads.

`DirectRecords` does it directly (any transaction, any operation).
`BatchRecords` is the committer's write-back cache for one batch of appends
that run straight in the outer transaction: each record is read once per
batch, updated in memory and written once by `flush()` before the commit.
The committer flushes and forgets it before any other kind of operation runs,
so no other operation ever sees a stale record.
"""

from __future__ import annotations

from typing import Protocol

import lmdb

from store import fencing, mailboxes
from store.errors import ResourceExhausted
from store.schema import U64, Dbs, MailboxRecord, QuotaRecord
from store.users import put_quota, quota

BODY_COUNTER = b"next_body_id"


def _quota_exceeded(user: str, q: QuotaRecord, added_bytes: int) -> ResourceExhausted:
    return ResourceExhausted(
        f"quota: user {user!r} uses {q.usage} of {q.limit} bytes; {added_bytes} more bytes do not fit"
    )


def charged(user: str, q: QuotaRecord, added_bytes: int, added_messages: int) -> QuotaRecord:
    """`q` after adding; ResourceExhausted (nothing changed) when growth passes the limit."""
    if added_bytes > 0 and q.limit and q.usage + added_bytes > q.limit:
        raise _quota_exceeded(user, q, added_bytes)
    return QuotaRecord(q.limit, max(0, q.usage + added_bytes), max(0, q.messages + added_messages))


class Records(Protocol):
    def selectable(self, user: str, mid: int) -> MailboxRecord: ...

    def put_mailbox(self, mid: int, record: MailboxRecord) -> None: ...

    def charge_quota(self, user: str, added_bytes: int, added_messages: int) -> None: ...

    def next_body_id(self) -> int: ...


class DirectRecords:
    """Straight reads and writes on `txn`."""

    def __init__(self, txn: lmdb.Transaction, dbs: Dbs) -> None:
        self.txn = txn
        self.dbs = dbs

    def selectable(self, user: str, mid: int) -> MailboxRecord:
        return mailboxes.selectable(self.txn, self.dbs, user, mid)

    def put_mailbox(self, mid: int, record: MailboxRecord) -> None:
        mailboxes.put(self.txn, self.dbs, mid, record)

    def charge_quota(self, user: str, added_bytes: int, added_messages: int) -> None:
        put_quota(self.txn, self.dbs, user, charged(user, quota(self.txn, self.dbs, user), added_bytes, added_messages))

    def next_body_id(self) -> int:
        raw = self.txn.get(BODY_COUNTER, db=self.dbs.meta)
        value = 1 if raw is None else int(U64.unpack(raw)[0])
        self.txn.put(BODY_COUNTER, U64.pack(value + 1), db=self.dbs.meta)
        return value


class BatchRecords:
    """Write-back cache over the committer's outer transaction for one run of appends."""

    def __init__(self, txn: lmdb.Transaction, dbs: Dbs) -> None:
        self.txn = txn
        self.dbs = dbs
        self._mailboxes: dict[int, MailboxRecord] = {}
        self._dirty_mailboxes: set[int] = set()
        self._quotas: dict[str, QuotaRecord] = {}
        self._body_id: int | None = None  # the next free one, once read
        self._epoch: int | None = None

    def check_epoch(self, epoch: int) -> None:
        if self._epoch is None:
            self._epoch = fencing.stored_epoch(self.txn, self.dbs)
        fencing.check_against(self._epoch, epoch)

    def selectable(self, user: str, mid: int) -> MailboxRecord:
        record = self._mailboxes.get(mid)
        if record is None:
            record = mailboxes.by_id(self.txn, self.dbs, user, mid)
            self._mailboxes[mid] = record
        # The same checks as mailboxes.selectable, on the cached record.
        if record.user != user:
            mailboxes.by_id(self.txn, self.dbs, user, mid)  # raises NotFound with the usual message
        if record.noselect:
            mailboxes.selectable(self.txn, self.dbs, user, mid)  # raises FailedPrecondition
        return record

    def put_mailbox(self, mid: int, record: MailboxRecord) -> None:
        self._mailboxes[mid] = record
        self._dirty_mailboxes.add(mid)

    def charge_quota(self, user: str, added_bytes: int, added_messages: int) -> None:
        q = self._quotas.get(user)
        if q is None:
            q = quota(self.txn, self.dbs, user)
        self._quotas[user] = charged(user, q, added_bytes, added_messages)

    def next_body_id(self) -> int:
        if self._body_id is None:
            raw = self.txn.get(BODY_COUNTER, db=self.dbs.meta)
            self._body_id = 1 if raw is None else int(U64.unpack(raw)[0])
        value = self._body_id
        self._body_id = value + 1
        return value

    def flush(self) -> None:
        """Write what changed into the transaction and forget everything (the epoch too)."""
        for mid in self._dirty_mailboxes:
            mailboxes.put(self.txn, self.dbs, mid, self._mailboxes[mid])
        for user, q in self._quotas.items():
            put_quota(self.txn, self.dbs, user, q)
        if self._body_id is not None:
            self.txn.put(BODY_COUNTER, U64.pack(self._body_id), db=self.dbs.meta)
        self._mailboxes.clear()
        self._dirty_mailboxes.clear()
        self._quotas.clear()
        self._body_id = None
        self._epoch = None
