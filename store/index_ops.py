"""Index queries of MailStore: the MailboxIndex service (store/index_scan.py)."""

from __future__ import annotations

from collections.abc import Iterator

import lmdb

from mailha_api import mailbox_index_pb2 as pb
from store import index_scan, mailboxes, messages, names, uidset
from store.core import StoreCore
from store.errors import InvalidArgument


class IndexOps(StoreCore):
    def scan_index(self, req: pb.IndexScanRequest) -> Iterator[pb.IndexChunk]:
        parsed = uidset.parse(req.uid_set)
        user = names.user_name(req.user)
        queries = [(q.field, bytes(q.needle)) for q in req.header_queries]
        if any(not needle for _, needle in queries):
            raise InvalidArgument("header query: the needle is empty")
        # One read transaction for the whole stream, as Fetch (see message_ops.fetch).
        with self.gate.reading():
            try:
                txn = self.env.begin()
            except lmdb.MapResizedError:
                txn = None
            if txn is not None:
                with txn:
                    mailboxes.selectable(txn, self.dbs, user, req.mailbox_id)
                    ranges = parsed.resolve(messages.highest_uid(txn, self.dbs, req.mailbox_id))
                    yield from index_scan.scan(
                        txn,
                        self.dbs,
                        req.mailbox_id,
                        ranges,
                        with_sizes_dates=req.with_sizes_dates,
                        with_sort_keys=req.with_sort_keys,
                        queries=queries,
                        text_queries=tuple((q.needle, q.body_only) for q in req.text_queries),
                        fulltext=self.fulltext,
                    )
                return
        self._adopt_map_size()
        yield from self.scan_index(req)
