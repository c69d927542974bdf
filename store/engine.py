"""The mailbox store in one process: LMDB environment, committer, change feed, logins.

Methods take and return the API's protobuf messages (the contract) and raise
StoreError subclasses; `store.servicer` maps those to gRPC statuses. Reads
run in the caller's thread in a read transaction; writes go through the
committer (group commit) and return only after their commit is durable.
"""

from __future__ import annotations

import logging
import os
import pathlib
import queue
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeVar

import lmdb

from mailha_api import store_pb2
from store import bodies, fencing, mailboxes, messages, names, uidset, users
from store.changefeed import ChangeFeed, Subscription
from store.committer import Committer, WriteContext
from store.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, Unauthenticated, Unavailable
from store.mapgate import MapGate
from store.passwords import CredentialCache, hash_password, verify_password
from store.schema import FORMAT_VERSION, U64, Dbs, MailboxRecord, MessageRecord

log = logging.getLogger("mailha.store")
T = TypeVar("T")
MIB = 1024 * 1024


@dataclass(frozen=True)
class StoreOptions:
    data_dir: pathlib.Path
    max_message_size: int = 20 * MIB
    default_quota: int = 0
    map_size: int = 256 * MIB
    max_batch: int = 256
    max_readers: int = 1024
    watch_queue_limit: int = 1000


class MailStore:
    def __init__(self, options: StoreOptions) -> None:
        self.options = options
        options.data_dir.mkdir(parents=True, exist_ok=True)
        self.spool_dir = options.data_dir / "spool"
        # Left-overs of appends that were in flight when a process died.
        shutil.rmtree(self.spool_dir, ignore_errors=True)
        self.spool_dir.mkdir(mode=0o700)
        self.env = lmdb.open(
            str(options.data_dir / "lmdb"),
            map_size=options.map_size,
            max_dbs=16,
            max_readers=options.max_readers,
            subdir=True,
            sync=True,
            metasync=True,
            writemap=False,
        )
        stale = self.env.reader_check()
        if stale:
            log.info("reclaimed %d stale LMDB reader slots", stale)
        self.dbs = Dbs(self.env)
        with self.env.begin(write=True) as txn:
            txn.put(b"format", U64.pack(FORMAT_VERSION), db=self.dbs.meta, overwrite=False)
        self.feed = ChangeFeed(options.watch_queue_limit)
        self.gate = MapGate()
        self.committer = Committer(self.env, self.dbs, self.feed.publish, options.max_batch, self.gate)
        self.logins = CredentialCache()
        self._decoy: str | None = None
        self.committer.start()

    def close(self) -> None:
        self.feed.close_all()
        self.committer.stop()
        self.env.close()

    # ---- plumbing ---------------------------------------------------------

    def read(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        while True:
            try:
                with self.gate.reading(), self.env.begin() as txn:
                    return fn(txn)
            except lmdb.MapResizedError:
                self._adopt_map_size()

    def _adopt_map_size(self) -> None:
        """Another process grew the map: take its size (no transaction may be open)."""
        self.gate.exclusive(lambda: self.env.set_mapsize(0))

    def write(self, epoch: int, fn: Callable[[WriteContext], T]) -> T:
        return self.committer.run(epoch, fn)

    # ---- fencing ----------------------------------------------------------

    def epoch(self) -> store_pb2.EpochReply:
        stored = self.read(lambda txn: fencing.stored_epoch(txn, self.dbs))
        return store_pb2.EpochReply(epoch=stored, writable=self.committer.writable)

    def fence(self, epoch: int) -> store_pb2.EpochReply:
        self.committer.run(None, lambda ctx: fencing.fence(ctx.txn, ctx.dbs, epoch), needs_writable=False)
        return self.epoch()

    def fence_next(self) -> store_pb2.EpochReply:
        def op(ctx: WriteContext) -> int:
            return fencing.fence(ctx.txn, ctx.dbs, fencing.stored_epoch(ctx.txn, ctx.dbs) + 1)

        self.committer.run(None, op, needs_writable=False)
        return self.epoch()

    def set_writable(self, epoch: int, writable: bool) -> store_pb2.EpochReply:
        if writable:
            stored = self.epoch().epoch
            if epoch != stored:
                raise FailedPrecondition(
                    f"cannot resume writes with epoch {epoch}: the store's epoch is {stored} (Fence first)"
                )
        # Suspending needs no proof: losing certainty must always be able to stop writes.
        self.committer.writable = writable
        return self.epoch()

    # ---- users ------------------------------------------------------------

    def create_user(self, req: store_pb2.CreateUserRequest) -> store_pb2.UserInfo:
        name = names.user_name(req.name)
        if not req.password:
            raise InvalidArgument("password is empty")
        pw_hash = hash_password(req.password)  # slow: outside the committer
        limit = req.quota_bytes or self.options.default_quota

        def op(ctx: WriteContext) -> store_pb2.UserInfo:
            users.create(ctx.txn, ctx.dbs, name, pw_hash, limit)
            if not req.no_default_mailboxes:
                for box, special in users.DEFAULT_MAILBOXES:
                    mailboxes.create(ctx.txn, ctx.dbs, name, box, special_use=special, subscribed=True)
            return users.info(ctx.txn, ctx.dbs, name)

        return self.write(req.epoch, op)

    def delete_user(self, req: store_pb2.DeleteUserRequest) -> None:
        def op(ctx: WriteContext) -> None:
            users.require_user(ctx.txn, ctx.dbs, req.name)
            for box, mid in reversed(mailboxes.user_mailboxes(ctx.txn, ctx.dbs, req.name)):
                mailboxes.purge_messages(ctx.txn, ctx.dbs, req.name, mid)
                ctx.txn.delete(U64.pack(mid), db=ctx.dbs.mailboxes)
                ctx.txn.delete(req.name.encode() + b"\0" + box.encode(), db=ctx.dbs.mailbox_names)
                ctx.events.append(store_pb2.ChangeEvent(mailbox_id=mid, deleted=True))
            users.delete_record(ctx.txn, ctx.dbs, req.name)
            ctx.after_commit.append(lambda: self.logins.forget_user(req.name))

        self.write(req.epoch, op)

    def list_users(self) -> store_pb2.ListUsersReply:
        def fn(txn: lmdb.Transaction) -> store_pb2.ListUsersReply:
            return store_pb2.ListUsersReply(
                users=[users.info(txn, self.dbs, n) for n in users.all_users(txn, self.dbs)]
            )

        return self.read(fn)

    def get_user(self, name: str) -> store_pb2.UserInfo:
        return self.read(lambda txn: users.info(txn, self.dbs, users.require_user(txn, self.dbs, name)))

    def set_password(self, req: store_pb2.SetPasswordRequest) -> None:
        if not req.password:
            raise InvalidArgument("password is empty")
        pw_hash = hash_password(req.password)

        def op(ctx: WriteContext) -> None:
            users.set_password(ctx.txn, ctx.dbs, req.name, pw_hash)
            ctx.after_commit.append(lambda: self.logins.forget_user(req.name))

        self.write(req.epoch, op)
        self.logins.forget_user(req.name)

    def authenticate(self, login: str, password: str) -> str:
        """The user name for (login, password); Unauthenticated with a generic message otherwise."""
        failed = Unauthenticated("authentication failed: unknown user or wrong password")
        user, stored = self.read(lambda txn: self._login_lookup(txn, login))
        if not password:
            raise failed
        if user is None or stored is None:
            # As slow as a wrong password, so timing does not tell which user names exist.
            verify_password(password, self._decoy_hash())
            raise failed
        if self.logins.check(user, password):
            return user
        if not verify_password(password, stored):
            raise failed
        self.logins.remember(user, password)
        return user

    def _decoy_hash(self) -> str:
        if self._decoy is None:
            self._decoy = hash_password(os.urandom(16).hex())
        return self._decoy

    def _login_lookup(self, txn: lmdb.Transaction, login: str) -> tuple[str | None, str | None]:
        user = users.login_name(txn, self.dbs, login)
        return user, (users.password_hash(txn, self.dbs, user) if user else None)

    # ---- addresses and quotas ----------------------------------------------

    def add_address(self, req: store_pb2.AddAddressRequest) -> store_pb2.AddressInfo:
        return self.write(req.epoch, lambda ctx: users.add_address(ctx.txn, ctx.dbs, req.address, req.user))

    def delete_address(self, req: store_pb2.DeleteAddressRequest) -> None:
        self.write(req.epoch, lambda ctx: users.delete_address(ctx.txn, ctx.dbs, req.address))

    def list_addresses(self, user: str) -> store_pb2.ListAddressesReply:
        def fn(txn: lmdb.Transaction) -> store_pb2.ListAddressesReply:
            if user:
                users.require_user(txn, self.dbs, user)
                pairs = [(a, user) for a in users.addresses_of(txn, self.dbs, user)]
            else:
                pairs = users.all_addresses(txn, self.dbs)
            return store_pb2.ListAddressesReply(addresses=[store_pb2.AddressInfo(address=a, user=u) for a, u in pairs])

        return self.read(fn)

    def resolve_address(self, address: str) -> store_pb2.AddressInfo:
        return self.read(lambda txn: users.resolve_address(txn, self.dbs, address))

    def get_quota(self, user: str) -> store_pb2.QuotaInfo:
        def fn(txn: lmdb.Transaction) -> store_pb2.QuotaInfo:
            q = users.quota(txn, self.dbs, users.require_user(txn, self.dbs, user))
            return store_pb2.QuotaInfo(user=user, usage_bytes=q.usage, limit_bytes=q.limit, messages=q.messages)

        return self.read(fn)

    def set_quota(self, req: store_pb2.SetQuotaRequest) -> store_pb2.QuotaInfo:
        if req.limit_bytes < 0:
            raise InvalidArgument(f"quota limit {req.limit_bytes} is negative (0 = unlimited)")

        def op(ctx: WriteContext) -> store_pb2.QuotaInfo:
            q = users.quota(ctx.txn, ctx.dbs, users.require_user(ctx.txn, ctx.dbs, req.user))
            users.put_quota(ctx.txn, ctx.dbs, req.user, q.__class__(req.limit_bytes, q.usage, q.messages))
            return store_pb2.QuotaInfo(
                user=req.user, usage_bytes=q.usage, limit_bytes=req.limit_bytes, messages=q.messages
            )

        return self.write(req.epoch, op)

    # ---- mailboxes ----------------------------------------------------------

    def create_mailbox(self, req: store_pb2.CreateMailboxRequest) -> store_pb2.MailboxInfo:
        def op(ctx: WriteContext) -> store_pb2.MailboxInfo:
            users.require_user(ctx.txn, ctx.dbs, req.user)
            mid, record = mailboxes.create(
                ctx.txn, ctx.dbs, req.user, req.name, special_use=req.special_use, subscribed=False
            )
            kids = bool(mailboxes.children(ctx.txn, ctx.dbs, req.user, record.name))
            return mailboxes.info(record, mid, kids, with_status=True)

        return self.write(req.epoch, op)

    def delete_mailbox(self, req: store_pb2.DeleteMailboxRequest) -> None:
        def op(ctx: WriteContext) -> None:
            users.require_user(ctx.txn, ctx.dbs, req.user)
            mid = mailboxes.delete(ctx.txn, ctx.dbs, req.user, req.name)
            ctx.events.append(store_pb2.ChangeEvent(mailbox_id=mid, deleted=True))

        self.write(req.epoch, op)

    def rename_mailbox(self, req: store_pb2.RenameMailboxRequest) -> store_pb2.MailboxInfo:
        def op(ctx: WriteContext) -> store_pb2.MailboxInfo:
            users.require_user(ctx.txn, ctx.dbs, req.user)
            mid, moved = mailboxes.rename(ctx.txn, ctx.dbs, req.user, req.old_name, req.new_name)
            for moved_id in moved:
                ctx.events.append(store_pb2.ChangeEvent(mailbox_id=moved_id, renamed=True))
            record = mailboxes.by_id(ctx.txn, ctx.dbs, req.user, mid)
            kids = bool(mailboxes.children(ctx.txn, ctx.dbs, req.user, record.name))
            return mailboxes.info(record, mid, kids, with_status=True)

        return self.write(req.epoch, op)

    def list_mailboxes(self, req: store_pb2.ListMailboxesRequest) -> store_pb2.ListMailboxesReply:
        def fn(txn: lmdb.Transaction) -> store_pb2.ListMailboxesReply:
            users.require_user(txn, self.dbs, req.user)
            boxes = mailboxes.list_all(txn, self.dbs, req.user, req.with_status, req.subscribed_only)
            return store_pb2.ListMailboxesReply(mailboxes=boxes)

        return self.read(fn)

    def subscribe(self, req: store_pb2.SubscribeRequest) -> None:
        def op(ctx: WriteContext) -> None:
            users.require_user(ctx.txn, ctx.dbs, req.user)
            mid, record = mailboxes.lookup(ctx.txn, ctx.dbs, req.user, req.name)
            mailboxes.put(ctx.txn, ctx.dbs, mid, record.evolve(subscribed=req.subscribed))

        self.write(req.epoch, op)

    def status(self, user: str, name: str) -> store_pb2.MailboxInfo:
        def fn(txn: lmdb.Transaction) -> store_pb2.MailboxInfo:
            users.require_user(txn, self.dbs, user)
            mid, record = mailboxes.lookup(txn, self.dbs, user, name)
            kids = bool(mailboxes.children(txn, self.dbs, user, record.name))
            return mailboxes.info(record, mid, kids, with_status=True)

        return self.read(fn)

    def select(self, user: str, name: str) -> store_pb2.SelectReply:
        def fn(txn: lmdb.Transaction) -> store_pb2.SelectReply:
            users.require_user(txn, self.dbs, user)
            mid, record = mailboxes.lookup(txn, self.dbs, user, name)
            mailboxes.selectable(txn, self.dbs, user, mid)
            kids = bool(mailboxes.children(txn, self.dbs, user, record.name))
            reply = store_pb2.SelectReply(mailbox=mailboxes.info(record, mid, kids, with_status=True))
            keywords: set[str] = set()
            uids = reply.uids
            for uid, rec in messages.all_messages(txn, self.dbs, mid):
                uids.append(uid)
                keywords.update(f for f in rec.flags if not f.startswith("\\"))
            reply.permanent_flags.extend(sorted(keywords))
            return reply

        return self.read(fn)

    # ---- messages -------------------------------------------------------------

    def check_announced_size(self, size: int) -> None:
        if size > self.options.max_message_size:
            raise ResourceExhausted(
                f"size: message of {size} bytes exceeds the limit of {self.options.max_message_size} bytes"
            )

    def _items(self, header: store_pb2.AppendHeader, source: bodies.BodySource) -> messages.NewMessage:
        self.check_announced_size(source.size)
        if header.size and header.size != source.size:
            raise InvalidArgument(f"size: announced {header.size} bytes but received {source.size}")
        if source.size == 0:
            raise InvalidArgument("message is empty")
        return messages.NewMessage(source, names.flags(header.flags), header.internal_date, header.tz_offset_minutes)

    def _append_op(
        self, header: store_pb2.AppendHeader, items: list[messages.NewMessage]
    ) -> Callable[[WriteContext], tuple[int, MailboxRecord, list[store_pb2.MessageMeta]]]:
        user = names.user_name(header.user)
        if not header.mailbox_id and not header.mailbox:
            raise InvalidArgument("append needs a mailbox name or mailbox_id")

        def op(ctx: WriteContext) -> tuple[int, MailboxRecord, list[store_pb2.MessageMeta]]:
            mid = header.mailbox_id or mailboxes.lookup(ctx.txn, ctx.dbs, user, header.mailbox)[0]
            record, metas = messages.append(ctx.txn, ctx.dbs, user, mid, items)
            ctx.events.append(store_pb2.ChangeEvent(mailbox_id=mid, modseq=record.highestmodseq, added=metas))
            return mid, record, metas

        return op

    def submit_append(self, header: store_pb2.AppendHeader, source: bodies.BodySource) -> Future[store_pb2.AppendReply]:
        """Queue one append; the future gives its reply once durable (AppendPipeline keeps many in flight)."""
        op = self._append_op(header, [self._items(header, source)])
        epoch = header.epoch

        def reply_op(ctx: WriteContext) -> store_pb2.AppendReply:
            mid, record, metas = op(ctx)
            return store_pb2.AppendReply(
                uidvalidity=record.uidvalidity, uid=metas[0].uid, modseq=metas[0].modseq, mailbox_id=mid, epoch=epoch
            )

        return self.committer.submit(epoch, reply_op)

    def append(self, header: store_pb2.AppendHeader, source: bodies.BodySource) -> store_pb2.AppendReply:
        try:
            return self.submit_append(header, source).result()
        finally:
            source.discard()

    def multi_append(
        self, header: store_pb2.AppendHeader, parts: list[tuple[store_pb2.AppendHeader, bodies.BodySource]]
    ) -> store_pb2.MultiAppendReply:
        try:
            items = [self._items(h, src) for h, src in parts]
            if not items:
                raise InvalidArgument("MultiAppend received no message")
            mid, record, metas = self.write(header.epoch, self._append_op(header, items))
            return store_pb2.MultiAppendReply(
                uidvalidity=record.uidvalidity, uids=[m.uid for m in metas], mailbox_id=mid, epoch=header.epoch
            )
        finally:
            for _, src in parts:
                src.discard()

    def fetch(self, req: store_pb2.FetchRequest) -> Iterator[store_pb2.FetchResponse]:
        uidset.parse(req.uid_set)  # malformed sets fail before the stream starts
        user = names.user_name(req.user)
        # One read transaction for the whole stream: a consistent snapshot. It holds the
        # map gate, so a slow reader delays a map resize (and with it the writes) until it ends.
        with self.gate.reading():
            try:
                txn = self.env.begin()
            except lmdb.MapResizedError:
                txn = None
            if txn is not None:
                with txn:
                    yield from self._fetch_in(txn, user, req)
                return
        self._adopt_map_size()
        yield from self.fetch(req)

    def _fetch_in(
        self, txn: lmdb.Transaction, user: str, req: store_pb2.FetchRequest
    ) -> Iterator[store_pb2.FetchResponse]:
        mailboxes.selectable(txn, self.dbs, user, req.mailbox_id)
        for uid, rec in messages.in_set(txn, self.dbs, req.mailbox_id, req.uid_set):
            if rec.modseq <= req.changed_since:
                continue
            item = messages.meta(uid, rec)
            if req.with_header:
                item.header = bodies.read_header(txn, self.dbs, rec.body_id)
            yield store_pb2.FetchResponse(meta=item)
            if req.with_body:
                yield from self._body_chunks(txn, uid, rec, req.body_offset, req.body_length)

    def _body_chunks(
        self, txn: lmdb.Transaction, uid: int, rec: MessageRecord, offset: int, length: int
    ) -> Iterator[store_pb2.FetchResponse]:
        """The byte range as chunks, streamed (one piece ahead, to mark the last); at least one chunk."""
        start = min(offset, rec.size)
        end = rec.size if not length else min(rec.size, start + length)
        held: tuple[int, bytes] = (start, b"")
        for piece in bodies.read_range(txn, self.dbs, rec.body_id, start, end - start):
            if held[1]:
                yield store_pb2.FetchResponse(chunk=store_pb2.BodyChunk(uid=uid, offset=held[0], data=held[1]))
            held = piece
        yield store_pb2.FetchResponse(chunk=store_pb2.BodyChunk(uid=uid, offset=held[0], data=held[1], last=True))

    def store_flags(self, req: store_pb2.StoreFlagsRequest) -> store_pb2.StoreFlagsReply:
        user = names.user_name(req.user)
        uidset.parse(req.uid_set)
        flags = names.flags(req.flags)
        since = req.unchanged_since if (req.has_unchanged_since or req.unchanged_since) else None

        def op(ctx: WriteContext) -> store_pb2.StoreFlagsReply:
            reply = messages.store_flags(
                ctx.txn,
                ctx.dbs,
                user,
                req.mailbox_id,
                text=req.uid_set,
                mode=req.mode,
                flags=flags,
                unchanged_since=since,
            )
            if reply.updated:
                ctx.events.append(
                    store_pb2.ChangeEvent(mailbox_id=req.mailbox_id, modseq=reply.highestmodseq, flags=reply.updated)
                )
            return reply

        return self.write(req.epoch, op)

    def copy(self, req: store_pb2.CopyRequest, move: bool) -> store_pb2.CopyReply:
        user = names.user_name(req.user)
        uidset.parse(req.uid_set)
        names.mailbox_name(req.dest_mailbox)

        def op(ctx: WriteContext) -> store_pb2.CopyReply:
            reply, dest_id, metas, source, dest = messages.copy(
                ctx.txn, ctx.dbs, user, req.mailbox_id, text=req.uid_set, dest_name=req.dest_mailbox, move=move
            )
            if metas:
                ctx.events.append(store_pb2.ChangeEvent(mailbox_id=dest_id, modseq=dest.highestmodseq, added=metas))
            if reply.expunged:
                ctx.events.append(
                    store_pb2.ChangeEvent(
                        mailbox_id=req.mailbox_id, modseq=source.highestmodseq, expunged=reply.expunged
                    )
                )
            return reply

        return self.write(req.epoch, op)

    def expunge(self, req: store_pb2.ExpungeRequest) -> store_pb2.ExpungeReply:
        user = names.user_name(req.user)
        if req.uid_set:
            uidset.parse(req.uid_set)

        def op(ctx: WriteContext) -> store_pb2.ExpungeReply:
            record, uids = messages.expunge(ctx.txn, ctx.dbs, user, req.mailbox_id, req.uid_set)
            if uids:
                ctx.events.append(
                    store_pb2.ChangeEvent(mailbox_id=req.mailbox_id, modseq=record.highestmodseq, expunged=uids)
                )
            return store_pb2.ExpungeReply(expunged=uids, highestmodseq=record.highestmodseq)

        return self.write(req.epoch, op)

    def vanished(self, req: store_pb2.VanishedRequest) -> store_pb2.VanishedReply:
        user = names.user_name(req.user)
        if req.uid_set:
            uidset.parse(req.uid_set)

        def fn(txn: lmdb.Transaction) -> store_pb2.VanishedReply:
            mailboxes.by_id(txn, self.dbs, user, req.mailbox_id)
            uids = messages.vanished(txn, self.dbs, req.mailbox_id, req.since_modseq, req.uid_set)
            return store_pb2.VanishedReply(uids=uids)

        return self.read(fn)

    def watch(
        self,
        req: store_pb2.WatchRequest,
        heartbeat_seconds: float,
        on_subscribe: Callable[[Subscription], object] | None = None,
    ) -> Iterator[store_pb2.ChangeEvent]:
        """Events of one mailbox after `since_modseq` (0 = from now); ends when it is deleted or renamed."""
        user = names.user_name(req.user)
        sub = self.feed.subscribe(req.mailbox_id)
        if on_subscribe is not None:
            on_subscribe(sub)
        try:
            # Subscribed before reading, so nothing committed in between is missed;
            # live events already covered by the catch-up are skipped by modseq.
            def catch_up(txn: lmdb.Transaction) -> store_pb2.ChangeEvent | None:
                record = mailboxes.selectable(txn, self.dbs, user, req.mailbox_id)
                if not req.since_modseq:
                    return store_pb2.ChangeEvent(mailbox_id=req.mailbox_id, modseq=record.highestmodseq)
                return messages.changes_since(txn, self.dbs, req.mailbox_id, record, req.since_modseq)

            first = self.read(catch_up)
            assert first is not None
            floor = first.modseq
            if req.since_modseq:
                yield first
            while True:
                try:
                    event = sub.queue.get(timeout=heartbeat_seconds)
                except queue.Empty:
                    yield store_pb2.ChangeEvent(mailbox_id=req.mailbox_id, heartbeat=True)
                    continue
                if event is None:
                    if sub.overflowed:
                        raise ResourceExhausted(
                            f"watch: this stream fell more than {sub.limit} events behind; "
                            "resubscribe with since_modseq to catch up"
                        )
                    raise Unavailable("the store is shutting down; resubscribe on the active node")
                if event.deleted or event.renamed:
                    yield event
                    return
                if event.modseq <= floor:
                    continue
                yield event
        finally:
            self.feed.unsubscribe(sub)
