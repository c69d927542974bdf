"""Index queries of MailStore: the MailboxIndex service (store/index_scan.py)."""

from __future__ import annotations

from collections.abc import Iterator

import lmdb

from mailha_api import mailbox_index_pb2 as pb
from store import index_scan
from store.core import StoreCore


class IndexOps(StoreCore):
    def scan_index(self, req: pb.IndexScanRequest) -> Iterator[pb.IndexChunk]:
        index_scan.check_request(req)  # bad input fails before any transaction
        # One read transaction for the whole stream, as Fetch (see message_ops.fetch).
        with self.gate.reading():
            try:
                txn = self.env.begin()
            except lmdb.MapResizedError:
                txn = None
            if txn is not None:
                with txn:
                    yield from index_scan.scan_request(txn, self.dbs, req, fulltext=self.fulltext)
                return
        self._adopt_map_size()
        yield from self.scan_index(req)
