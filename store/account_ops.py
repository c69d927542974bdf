"""Fencing, users, addresses, quotas and mailboxes of MailStore (API messages in and out)."""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future

import lmdb

from mailha_api import store_pb2
from store import fencing, mailboxes, metadata, names, read_ops, recent, subscriptions, users
from store.committer import WriteContext
from store.core import StoreCore
from store.errors import FailedPrecondition, InvalidArgument, NotFound, StoreError, Unauthenticated
from store.passwords import hash_password, needs_rehash, verify_password
from store.schema import U64, user_key

log = logging.getLogger("mailha.store.accounts")


class AccountOps(StoreCore):
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
        stored = self.epoch().epoch
        if writable and epoch != stored:
            raise FailedPrecondition(
                f"cannot resume writes with epoch {epoch}: the store's epoch is {stored} (Fence first)"
            )
        # Suspending takes the caller's epoch too, so a deposed writer (or any stray caller
        # on the socket) cannot stop the current one; a newer epoch than the stored one is
        # an agent that is about to fence this store, which may always stop writes.
        if not writable and epoch < stored:
            raise FailedPrecondition(f"fenced: epoch {epoch} is older than the store's epoch {stored}")
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
                ctx.events.append(store_pb2.ChangeEvent(user=req.name, mailbox_id=mid, name=box, deleted=True))
            users.delete_record(ctx.txn, ctx.dbs, req.name)
            metadata.forget(ctx.txn, ctx.dbs, req.name)
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
        record = self.read(lambda txn: read_ops.login_record(txn, self.dbs, login))
        if not password:
            raise failed
        if record is None:
            # As slow as a wrong password, so timing does not tell which user names exist.
            verify_password(password, self._decoy_hash())
            raise failed
        if not self.logins.verify(record.user, password, record.password_hash):
            raise failed
        if record.disabled:
            raise failed  # a disabled account: the same answer, so nothing tells it apart
        if needs_rehash(record.password_hash):
            self._upgrade_hash(record.user, password, record.password_hash)
        return record.user

    def _upgrade_hash(self, user: str, password: str, old: str) -> None:
        """Replace a hash of an older format after a login proved the password.

        Store maintenance, not a caller's write: it carries no epoch, and it only
        swaps a hash of this very password for a stronger one, and only while the
        record still holds `old` (a concurrent SetPassword wins). Skipped while
        writes are suspended or logins crowd the hash slots; the next login retries.
        """
        try:
            new = hash_password(password)

            def op(ctx: WriteContext) -> bool:
                if users.password_hash(ctx.txn, ctx.dbs, user) != old:
                    return False
                users.set_password(ctx.txn, ctx.dbs, user, new)
                return True

            if self.committer.run(None, op):
                log.info("upgraded the password hash of user %s", user)
        except StoreError as exc:
            log.info("password hash of user %s not upgraded this time: %s", user, exc.message)

    def _decoy_hash(self) -> str:
        if self._decoy is None:
            self._decoy = hash_password(os.urandom(16).hex())
        return self._decoy

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
            # Superior names created on the way are new mailboxes too (NOTIFY's MailboxName).
            missing = [
                parent
                for parent in names.parents(names.mailbox_name(req.name))
                if ctx.txn.get(user_key(req.user, parent), db=ctx.dbs.mailbox_names) is None
            ]
            mid, record = mailboxes.create(
                ctx.txn, ctx.dbs, req.user, req.name, special_use=req.special_use, subscribed=False
            )
            for parent in missing:
                parent_id = mailboxes.lookup(ctx.txn, ctx.dbs, req.user, parent)[0]
                ctx.events.append(store_pb2.ChangeEvent(user=req.user, mailbox_id=parent_id, name=parent, created=True))
            ctx.events.append(store_pb2.ChangeEvent(user=req.user, mailbox_id=mid, name=record.name, created=True))
            kids = bool(mailboxes.children(ctx.txn, ctx.dbs, req.user, record.name))
            return mailboxes.info(record, mid, kids, with_status=True)

        return self.write(req.epoch, op)

    def delete_mailbox(self, req: store_pb2.DeleteMailboxRequest) -> None:
        def op(ctx: WriteContext) -> None:
            users.require_user(ctx.txn, ctx.dbs, req.user)
            name = mailboxes.lookup(ctx.txn, ctx.dbs, req.user, req.name)[1].name
            mid = mailboxes.delete(ctx.txn, ctx.dbs, req.user, req.name)
            ctx.events.append(store_pb2.ChangeEvent(user=req.user, mailbox_id=mid, name=name, deleted=True))

        self.write(req.epoch, op)

    def rename_mailbox(self, req: store_pb2.RenameMailboxRequest) -> store_pb2.MailboxInfo:
        def op(ctx: WriteContext) -> store_pb2.MailboxInfo:
            users.require_user(ctx.txn, ctx.dbs, req.user)
            old_top = mailboxes.lookup(ctx.txn, ctx.dbs, req.user, req.old_name)[1].name
            mid, moved, left_inbox = mailboxes.rename(ctx.txn, ctx.dbs, req.user, req.old_name, req.new_name)
            record = mailboxes.by_id(ctx.txn, ctx.dbs, req.user, mid)
            for moved_id in moved:
                name = mailboxes.by_id(ctx.txn, ctx.dbs, req.user, moved_id).name
                old = old_top + name[len(record.name) :]
                ctx.events.append(
                    store_pb2.ChangeEvent(user=req.user, mailbox_id=moved_id, name=name, old_name=old, renamed=True)
                )
            if not moved:  # RENAME INBOX: a new mailbox holds INBOX's mail
                ctx.events.append(store_pb2.ChangeEvent(user=req.user, mailbox_id=mid, name=record.name, created=True))
            if left_inbox:  # RENAME INBOX: its messages left it, an expunge for the sessions that have it selected
                inbox_id, inbox = mailboxes.lookup(ctx.txn, ctx.dbs, req.user, "INBOX")
                ctx.events.append(
                    store_pb2.ChangeEvent(
                        user=req.user, mailbox_id=inbox_id, modseq=inbox.highestmodseq, expunged=left_inbox
                    )
                )
            kids = bool(mailboxes.children(ctx.txn, ctx.dbs, req.user, record.name))
            return mailboxes.info(record, mid, kids, with_status=True)

        return self.write(req.epoch, op)

    def list_mailboxes(self, req: store_pb2.ListMailboxesRequest) -> store_pb2.ListMailboxesReply:
        return self.read(lambda txn: read_ops.list_mailboxes(txn, self.dbs, req))

    # ---- METADATA (store/metadata.py) ----------------------------------------------
    def _metadata_mailbox(self, txn: lmdb.Transaction, user: str, name: str) -> int:
        users.require_user(txn, self.dbs, user)
        if not name:
            return 0
        return mailboxes.lookup(txn, self.dbs, user, name)[0]

    def get_metadata(self, req: store_pb2.GetMetadataRequest) -> store_pb2.GetMetadataReply:
        if len(req.entries) > metadata.MAX_ENTRIES:
            raise InvalidArgument(f"metadata: at most {metadata.MAX_ENTRIES} entries per request")
        depth = min(req.depth, metadata.DEPTH_INFINITY)

        def fn(txn: lmdb.Transaction) -> store_pb2.GetMetadataReply:
            mid = self._metadata_mailbox(txn, req.user, req.mailbox)
            return store_pb2.GetMetadataReply(
                entries=metadata.get(txn, self.dbs, req.user, mid, req.entries, depth=depth)
            )

        return self.read(fn)

    def set_metadata(self, req: store_pb2.SetMetadataRequest) -> store_pb2.SetMetadataReply:
        if len(req.entries) > metadata.MAX_ENTRIES:
            return store_pb2.SetMetadataReply(refused="TOOMANY")

        def op(ctx: WriteContext) -> store_pb2.SetMetadataReply:
            mid = self._metadata_mailbox(ctx.txn, req.user, req.mailbox)
            return metadata.set_entries(ctx.txn, ctx.dbs, req.user, mid, req.entries)

        return self.write(req.epoch, op)

    def subscribe(self, req: store_pb2.SubscribeRequest) -> None:
        def op(ctx: WriteContext) -> None:
            users.require_user(ctx.txn, ctx.dbs, req.user)
            try:
                mid, record = mailboxes.lookup(ctx.txn, ctx.dbs, req.user, req.name)
            except NotFound:
                # A name without a mailbox: remembered (SUBSCRIBE) or forgotten (UNSUBSCRIBE), as Dovecot.
                name = names.mailbox_name(req.name)
                if req.subscribed:
                    subscriptions.keep(ctx.txn, ctx.dbs, req.user, name)
                elif not subscriptions.take(ctx.txn, ctx.dbs, req.user, name):
                    raise
            else:
                name = record.name
                mailboxes.put(ctx.txn, ctx.dbs, mid, record.evolve(subscribed=req.subscribed))
            # mailbox_id 0: a subscription is no event of the mailbox's own feed.
            ctx.events.append(
                store_pb2.ChangeEvent(
                    user=req.user, name=name, subscribed=req.subscribed, unsubscribed=not req.subscribed
                )
            )

        self.write(req.epoch, op)

    def status(self, user: str, name: str) -> store_pb2.MailboxInfo:
        return self.read(lambda txn: read_ops.status(txn, self.dbs, user, name))

    def claim_recent(self, req: store_pb2.ClaimRecentRequest) -> store_pb2.ClaimRecentReply:
        return self.submit_claim_recent(req).result()

    def submit_claim_recent(self, req: store_pb2.ClaimRecentRequest) -> Future[store_pb2.ClaimRecentReply]:
        user = names.user_name(req.user)

        def op(ctx: WriteContext) -> store_pb2.ClaimRecentReply:
            record = mailboxes.selectable(ctx.txn, ctx.dbs, user, req.mailbox_id)
            low, high = recent.claim(ctx.txn, ctx.dbs, req.mailbox_id, min(req.up_to_uid, record.uidnext))
            return store_pb2.ClaimRecentReply(from_uid=low, to_uid=high)

        # Losing a claim to an OS crash only shows the messages as \Recent once more.
        return self.submit_write(req.epoch, op, durable=False)

    def select(self, user: str, name: str, *, packed: bool = False) -> store_pb2.SelectReply:
        return self.read(lambda txn: read_ops.select(txn, self.dbs, user, name, packed=packed))
