"""Read-only access to a running store's LMDB environment from another process.

An imapd on the same host as `mailha store serve` answers SELECT, STATUS,
LIST and small FETCHes from here instead of a gRPC round trip (issue 13):
LMDB lets any number of processes read while the store writes, and a read
transaction begun after a write's reply sees that write (the store answers
only once its commit is durable). Writes and the change feed still go through
the store. Same functions as the store's own answers (`store.read_ops`).

Logins: a (login, password) pair the store accepted is remembered here, bound to
the stored hash it was accepted with (`verified_login`); a repeated login reads
the account and, if its hash is unchanged and it is enabled, answers without the
store. Anything else (first login, wrong password, changed password, disabled
or deleted account, a hash the store will upgrade) goes to the store, which
verifies, answers failures slowly and alike, and keeps its own cache.

Not thread-safe by design: one owner (imapd's trio thread) runs one read at a
time, so the map can be re-adopted without a gate when the store grew it.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Sequence
from typing import TypeVar

import lmdb

from mailha_api import mailbox_index_pb2, store_pb2
from store import index_scan, names, read_ops, uidset
from store.errors import Unavailable
from store.layout import data_file, lmdb_dir
from store.passwords import CredentialCache, needs_rehash
from store.schema import FORMAT_KEY, MAX_DBS, Dbs, check_format
from store.uid_list_cache import UidListCache

T = TypeVar("T")


class LocalReader:
    def __init__(self, data_dir: pathlib.Path) -> None:
        self.data_dir = data_dir
        path = lmdb_dir(data_dir)
        if not data_file(data_dir).exists():
            raise Unavailable(f"no store environment at {path}")
        # map_size=0: adopt the size the store gave the file; lock=True: take part in
        # the reader table, so the store's writer never reuses pages we still read.
        self.env = lmdb.open(str(path), readonly=True, lock=True, max_dbs=MAX_DBS, subdir=True, map_size=0)
        self.dbs = Dbs.read_only(self.env)
        with self.env.begin() as txn:
            check_format(txn.get(FORMAT_KEY, db=self.dbs.meta), str(data_dir))
        self.logins = CredentialCache()
        self.uid_lists = UidListCache()

    def close(self) -> None:
        self.env.close()

    def forget_mailbox(self, mailbox_id: int) -> int:
        """Drop what is cached of the mailbox (its UID list); the bytes let go."""
        return self.uid_lists.drop(mailbox_id)

    def read(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        while True:
            try:
                with self.env.begin() as txn:
                    return fn(txn)
            except lmdb.MapResizedError:
                self.env.set_mapsize(0)  # the store grew the map; no transaction of ours is open

    def list_mailboxes(self, req: store_pb2.ListMailboxesRequest) -> store_pb2.ListMailboxesReply:
        return self.read(lambda txn: read_ops.list_mailboxes(txn, self.dbs, req))

    def status(self, user: str, name: str) -> store_pb2.MailboxInfo:
        return self.read(lambda txn: read_ops.status(txn, self.dbs, user, name))

    def select(self, user: str, name: str, *, packed: bool = False) -> store_pb2.SelectReply:
        return self.read(
            lambda txn: read_ops.select(txn, self.dbs, user, name, packed=packed, uid_lists=self.uid_lists)
        )

    def fetch_batch(self, req: store_pb2.FetchRequest) -> store_pb2.FetchBatchReply:
        user = read_ops.check_fetch(req)
        return self.read(lambda txn: read_ops.fetch_batch(txn, self.dbs, user, req))

    def unchanged_by_store(self, req: store_pb2.StoreFlagsRequest) -> int | None:
        return self.read(lambda txn: read_ops.unchanged_by_store(txn, self.dbs, req))

    def flags_already(
        self, *, epoch: int, user: str, mailbox_id: int, uid_set: str, mode: int, flags: Sequence[str]
    ) -> int | None:
        """`unchanged_by_store` from the STORE's fields, without a request message."""
        return self.read(
            lambda txn: read_ops.flags_already(
                txn, self.dbs, epoch=epoch, user=user, mailbox_id=mailbox_id, uid_set=uid_set, mode=mode, flags=flags
            )
        )

    def nothing_to_expunge(self, req: store_pb2.ExpungeRequest) -> int | None:
        return self.read(lambda txn: read_ops.nothing_to_expunge(txn, self.dbs, req))

    def scan_index(self, req: mailbox_index_pb2.IndexScanRequest) -> list[mailbox_index_pb2.IndexChunk]:
        """MailboxIndex.Scan's chunks, all of them from one read transaction (the store's own
        `index_scan.scan_request`). No text queries: the full-text index is the store's."""
        if req.text_queries:
            raise ValueError("text queries go to the store, which owns the full-text index")
        index_scan.check_request(req)
        return self.read(lambda txn: list(index_scan.scan_request(txn, self.dbs, req, fulltext=None)))

    def fetch_items(self, req: store_pb2.FetchRequest) -> read_ops.FetchItems | None:
        """`fetch_batch` without the reply message: (meta, body) pairs, None when truncated."""
        user = read_ops.check_fetch(req)
        return self.read(lambda txn: read_ops.fetch_items(txn, self.dbs, user, req))

    def login_record(self, login: str) -> read_ops.LoginRecord | None:
        return self.read(lambda txn: read_ops.login_record(txn, self.dbs, login))

    def verified_login(self, login: str, password: str) -> tuple[str | None, read_ops.LoginRecord | None]:
        """(the user, if this pair was accepted by the store before and the account is
        unchanged since; the account as read now, for `remember_login` after the store
        accepted the pair)."""
        record = self.login_record(login)
        if record is None or record.disabled or not password or needs_rehash(record.password_hash):
            return None, None
        if self.logins.check(login, password, bound=record.password_hash):
            return record.user, record
        return None, record

    def remember_login(self, login: str, password: str, user: str, before: read_ops.LoginRecord) -> None:
        """The store accepted (login, password) as `user`: remember it if the account read
        before the call is what it still is (a password changed meanwhile is not bound)."""
        after = self.login_record(login)
        if after == before and after.user == user:
            self.logins.remember(login, password, bound=before.password_hash)

    def fetch_records(
        self, user: str, mailbox_id: int, uid_set: str, *, with_header: bool, with_body: bool, changed_since: int = 0
    ) -> list[read_ops.FetchRecord] | None:
        """`fetch_items` as the store's records (no API messages), None when truncated."""
        uidset.parse(uid_set)
        names.user_name(user)
        return self.read(
            lambda txn: read_ops.fetch_records(
                txn,
                self.dbs,
                user,
                mailbox_id,
                uid_set,
                with_header=with_header,
                with_body=with_body,
                changed_since=changed_since,
            )
        )
