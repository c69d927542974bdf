"""Messages of MailStore: appends, fetch, flags, copy/move, expunge, vanished, watch."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future
from typing import Final

import lmdb

from mailha_api import store_pb2
from mailparse.head_facts import index_and_keys
from store import (
    bodies,
    body_codec,
    delivery_dedupe,
    delivery_log,
    mailboxes,
    message_facts,
    messages,
    names,
    read_ops,
    recent,
    uidset,
    user_settings,
    users,
)
from store.changefeed import Origin, Subscription
from store.committer import LoneWriter, WriteContext
from store.core import StoreCore
from store.errors import InvalidArgument, ResourceExhausted, StoreError, Unavailable
from store.schema import MailboxRecord, MessageRecord

# Messages per commit of one STORE (submit_store_flags): ~10,000 flag changes take the
# committer ~0.2 s here, so a STORE 1:* over a million messages no longer holds every
# other user's writes for its whole length.
STORE_PIECE: Final = 10_000


class MessageOps(StoreCore):
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
        # The indexed header text, the facts and the compressed body are made here, in the
        # caller's thread, not in the committer (the one thread every write waits for); the
        # text and the sort keys from one reading of the header block.
        head = messages.source_head(source)
        block = bodies.header_block(head)
        text, keys = index_and_keys(block)
        facts = message_facts.of_keys(keys, head)
        if source.data is not None:
            source.packed = body_codec.compress_chunks(source.data)
        return messages.NewMessage(
            source, names.flags(header.flags), header.internal_date, header.tz_offset_minutes, text, facts, block
        )

    def _append_op(
        self, header: store_pb2.AppendHeader, items: list[messages.NewMessage]
    ) -> Callable[[WriteContext], tuple[int, MailboxRecord, list[store_pb2.MessageMeta]]]:
        user = names.user_name(header.user)
        if not header.mailbox_id and not header.mailbox:
            raise InvalidArgument("append needs a mailbox name or mailbox_id")
        # Checked and made canonical here, in the caller's thread, not in the committer's.
        name = "" if header.mailbox_id else names.mailbox_name(header.mailbox)

        def op(ctx: WriteContext) -> tuple[int, MailboxRecord, list[store_pb2.MessageMeta]]:
            mid = header.mailbox_id or mailboxes.id_of(ctx.txn, ctx.dbs, user, name)
            record, metas = messages.append(ctx.txn, ctx.dbs, user, mid, items, records=ctx.records)
            ctx.events.append(
                store_pb2.ChangeEvent(
                    user=user,
                    mailbox_id=mid,
                    modseq=record.highestmodseq,
                    added=metas,
                    after_modseq=record.highestmodseq - len(metas),  # one modseq per message
                )
            )
            return mid, record, metas

        return op

    def submit_append(
        self,
        header: store_pb2.AppendHeader,
        source: bodies.BodySource,
        origin: Origin | None = None,
        here: LoneWriter | None = None,
    ) -> Future[store_pb2.AppendReply]:
        """Queue one append; the future gives its reply once durable (AppendPipeline keeps many in flight).

        `here`: the caller's LoneWriter, to commit it in the calling thread when the committer is
        idle (Committer.submit)."""
        op = self._append_op(header, [self._items(header, source)])
        epoch = header.epoch
        identity = bytes(header.delivery_id)
        if identity and len(identity) != delivery_dedupe.IDENTITY_SIZE:
            raise InvalidArgument(f"delivery_id: {delivery_dedupe.IDENTITY_SIZE} bytes expected, got {len(identity)}")
        user = names.user_name(header.user)

        def reply_op(ctx: WriteContext) -> store_pb2.AppendReply:
            now = time.time()
            if identity:
                # Read before any write (a flat op may raise only then).
                earlier = self.dedupe.seen(ctx.txn, user, identity, now)
                if earlier is not None:
                    return store_pb2.AppendReply(
                        uidvalidity=earlier.uidvalidity,
                        uid=earlier.uid,
                        mailbox_id=earlier.mailbox_id,
                        epoch=epoch,
                        duplicate=True,
                    )
            if header.settings_revision:
                # The folder was chosen by these settings: they must still be the stored ones.
                user_settings.require_revision(ctx.txn, ctx.dbs, user, bytes(header.settings_revision))
            mid, record, metas = op(ctx)
            if identity:
                # Same transaction as the append: both or neither survive a crash.
                delivered = delivery_dedupe.Delivered(int(now), mid, record.uidvalidity, metas[0].uid)
                self.dedupe.record(ctx.txn, user, identity, now, delivered)
            delivery_log.record_append(ctx.txn, ctx.dbs, header)  # same transaction: both or neither
            reply = store_pb2.AppendReply(
                uidvalidity=record.uidvalidity, uid=metas[0].uid, modseq=metas[0].modseq, mailbox_id=mid, epoch=epoch
            )
            if header.claim_recent:
                # The appending session's own \Recent claim, in this commit instead of a
                # ClaimRecent call and commit of its own (the same range ClaimRecent would give).
                low, high = recent.claim(ctx.txn, ctx.dbs, mid, min(metas[0].uid + 1, record.uidnext))
                reply.recent_from, reply.recent_to = low, high
            return reply

        # Flat: a single append raises only before its first write (see messages.append).
        return self.committer.submit(epoch, reply_op, flat=True, origin=origin, here=here)

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
            if req.with_message_facts:
                message_facts.fill_meta(txn, self.dbs, req.mailbox_id, rec, item)
            yield store_pb2.FetchResponse(meta=item)
            if req.with_body:
                yield from self._body_chunks(txn, uid, rec, req.body_offset, req.body_length)

    def fetch_batch(self, req: store_pb2.FetchRequest) -> store_pb2.FetchBatchReply:
        """Fetch's selection in one reply, or `truncated` (and nothing) past the bounds."""
        user = read_ops.check_fetch(req)
        return self.read(lambda txn: read_ops.fetch_batch(txn, self.dbs, user, req))

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
        return self.submit_store_flags(req).result()

    def submit_store_flags(
        self, req: store_pb2.StoreFlagsRequest, origin: Origin | None = None
    ) -> Future[store_pb2.StoreFlagsReply]:
        """Queue a flag change; a bad request raises here, before anything is queued.

        A change over more than STORE_PIECE messages commits in pieces, each queued when
        the one before is done (messages.set_pieces: other users' writes go between them);
        the reply is the pieces' replies together. Like Dovecot's, such a STORE is not
        atomic: a failure after the first piece (the store fenced) leaves the pieces before
        it done and their changes reported to every session.
        """
        user = names.user_name(req.user)
        parsed = uidset.parse(req.uid_set)
        flags = names.flags(req.flags)
        since = req.unchanged_since if (req.has_unchanged_since or req.unchanged_since) else None
        starless = all(uidset.STAR not in r for r in parsed.ranges)
        if starless and sum(abs(b - a) + 1 for a, b in parsed.ranges) <= STORE_PIECE:
            return self._submit_flags(req, user, req.uid_set, flags, since, origin=origin)

        def cut(txn: lmdb.Transaction) -> list[str]:
            try:
                if mailboxes.by_id(txn, self.dbs, user, req.mailbox_id).messages <= STORE_PIECE:
                    return [req.uid_set]  # STORE 1:* in a mailbox of ordinary size: no key walk
            except StoreError:
                return [req.uid_set]  # the write itself reports it
            return messages.set_pieces(txn, self.dbs, req.mailbox_id, req.uid_set, STORE_PIECE)

        pieces = self.read(cut)
        if len(pieces) == 1:
            return self._submit_flags(req, user, req.uid_set, flags, since, origin=origin)
        whole: Future[store_pb2.StoreFlagsReply] = Future()
        merged = store_pb2.StoreFlagsReply()

        def piece(at: int) -> None:
            self._submit_flags(req, user, pieces[at], flags, since, origin=origin).add_done_callback(
                lambda done: landed(at, done)
            )

        def landed(at: int, done: Future[store_pb2.StoreFlagsReply]) -> None:
            try:
                reply = done.result()
            except BaseException as exc:
                whole.set_exception(exc)
                return
            merged.updated.extend(reply.updated)
            merged.modified.extend(reply.modified)
            merged.highestmodseq = reply.highestmodseq
            if at + 1 < len(pieces):
                piece(at + 1)  # runs on the committer's thread: only queues the next piece
            else:
                whole.set_result(merged)

        piece(0)
        return whole

    def _submit_flags(
        self,
        req: store_pb2.StoreFlagsRequest,
        user: str,
        uid_set: str,
        flags: tuple[str, ...],
        since: int | None,
        *,
        origin: Origin | None,
    ) -> Future[store_pb2.StoreFlagsReply]:
        def op(ctx: WriteContext) -> store_pb2.StoreFlagsReply:
            reply = messages.store_flags(
                ctx.txn,
                ctx.dbs,
                user,
                req.mailbox_id,
                text=uid_set,
                mode=req.mode,
                flags=flags,
                unchanged_since=since,
            )
            if reply.updated:
                ctx.events.append(
                    store_pb2.ChangeEvent(
                        user=user,
                        mailbox_id=req.mailbox_id,
                        modseq=reply.highestmodseq,
                        flags=reply.updated,
                        after_modseq=reply.highestmodseq - 1,
                    )
                )
            return reply

        # A flag change: an OS crash may undo it while it is the last commit (committer docstring).
        return self.submit_write(req.epoch, op, durable=False, origin=origin)

    def copy(self, req: store_pb2.CopyRequest, move: bool) -> store_pb2.CopyReply:
        return self.submit_copy(req, move).result()

    def submit_copy(
        self, req: store_pb2.CopyRequest, move: bool, origin: Origin | None = None
    ) -> Future[store_pb2.CopyReply]:
        user = names.user_name(req.user)
        uidset.parse(req.uid_set)
        names.mailbox_name(req.dest_mailbox)

        def op(ctx: WriteContext) -> store_pb2.CopyReply:
            reply, dest_id, metas, source, dest = messages.copy(
                ctx.txn, ctx.dbs, user, req.mailbox_id, text=req.uid_set, dest_name=req.dest_mailbox, move=move
            )
            reply.dest_mailbox_id, reply.dest_modseq = dest_id, dest.highestmodseq
            if move:
                reply.source_modseq = source.highestmodseq
            if move and metas and dest_id == req.mailbox_id:
                # MOVE within one mailbox: one change of two modseqs (copies, then the originals'
                # removal), told as one event: two events of the same modseq read as one repeated.
                ctx.events.append(
                    store_pb2.ChangeEvent(
                        user=user,
                        mailbox_id=dest_id,
                        modseq=dest.highestmodseq,
                        added=metas,
                        expunged=reply.expunged,
                        after_modseq=dest.highestmodseq - 2,
                    )
                )
                return reply
            if metas:
                ctx.events.append(
                    store_pb2.ChangeEvent(
                        user=user,
                        mailbox_id=dest_id,
                        modseq=dest.highestmodseq,
                        added=metas,
                        after_modseq=dest.highestmodseq - 1,
                    )
                )
            if reply.expunged:
                ctx.events.append(
                    store_pb2.ChangeEvent(
                        user=user,
                        mailbox_id=req.mailbox_id,
                        modseq=source.highestmodseq,
                        expunged=reply.expunged,
                        after_modseq=source.highestmodseq - 1,
                    )
                )
            return reply

        return self.submit_write(req.epoch, op, origin=origin)

    def expunge(self, req: store_pb2.ExpungeRequest) -> store_pb2.ExpungeReply:
        return self.submit_expunge(req).result()

    def submit_expunge(
        self, req: store_pb2.ExpungeRequest, origin: Origin | None = None
    ) -> Future[store_pb2.ExpungeReply]:
        user = names.user_name(req.user)
        if req.uid_set:
            uidset.parse(req.uid_set)

        def op(ctx: WriteContext) -> store_pb2.ExpungeReply:
            record, uids = messages.expunge(ctx.txn, ctx.dbs, user, req.mailbox_id, req.uid_set)
            if uids:
                ctx.events.append(
                    store_pb2.ChangeEvent(
                        user=user,
                        mailbox_id=req.mailbox_id,
                        modseq=record.highestmodseq,
                        expunged=uids,
                        after_modseq=record.highestmodseq - 1,
                    )
                )
            return store_pb2.ExpungeReply(expunged=uids, highestmodseq=record.highestmodseq)

        return self.submit_write(req.epoch, op, origin=origin)

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
        token: str = "",
    ) -> Iterator[store_pb2.ChangeEvent]:
        """Events of one mailbox after `since_modseq` (0 = from now); ends when it is deleted or renamed.

        `token`: the caller's feed token; events of writes made with it are not sent (changefeed)."""
        user = names.user_name(req.user)
        sub = self.feed.subscribe(req.mailbox_id, token)
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

    def watch_account(
        self,
        req: store_pb2.WatchAccountRequest,
        heartbeat_seconds: float,
        on_subscribe: Callable[[Subscription], object] | None = None,
    ) -> Generator[store_pb2.ChangeEvent, None, None]:
        """Every committed event of one user's mailboxes, names and subscriptions, from now on."""
        user = names.user_name(req.user)
        self.read(lambda txn: users.require_user(txn, self.dbs, user))
        sub = self.feed.subscribe_user(user)
        if on_subscribe is not None:
            on_subscribe(sub)
        try:
            while True:
                try:
                    event = sub.queue.get(timeout=heartbeat_seconds)
                except queue.Empty:
                    yield store_pb2.ChangeEvent(user=user, heartbeat=True)
                    continue
                if event is None:
                    if sub.overflowed:
                        raise ResourceExhausted(f"watch_account: this stream fell more than {sub.limit} events behind")
                    raise Unavailable("the store is shutting down; resubscribe on the active node")
                yield event
        finally:
            self.feed.unsubscribe(sub)
