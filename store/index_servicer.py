"""The gRPC face of the MailboxIndex service (proto/mailha_api/mailbox_index.proto)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from mailha_api import mailbox_index_pb2 as pb
from mailha_api import mailbox_index_pb2_grpc
from store.engine import MailStore
from store.servicer import errors_to_status


class MailboxIndexServicer(mailbox_index_pb2_grpc.MailboxIndexServicer):
    def __init__(self, store: MailStore) -> None:
        self.store = store

    def Scan(self, request: pb.IndexScanRequest, context: grpc.ServicerContext) -> Iterator[pb.IndexChunk]:
        with errors_to_status(context):
            yield from self.store.scan_index(request)
