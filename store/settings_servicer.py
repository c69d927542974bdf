"""The gRPC face of per-user settings and the delivery log (proto/mailha_api/settings.proto).

Served by the store process beside MailStore, on the same server; errors
become statuses through the same mapping (store.servicer._errors).
"""

from __future__ import annotations

import grpc

from mailha_api import settings_pb2, settings_pb2_grpc
from store import delivery_log, user_settings
from store.committer import WriteContext
from store.engine import MailStore
from store.servicer import _errors


class SettingsServicer(settings_pb2_grpc.SettingsServicer):
    def __init__(self, store: MailStore) -> None:
        self.store = store

    def _epoch(self, requested: int) -> int:
        """A one-shot writer (web, CLI) passes 0 and writes with the store's current epoch."""
        return requested or int(self.store.epoch().epoch)

    def GetSettings(
        self, request: settings_pb2.GetSettingsRequest, context: grpc.ServicerContext
    ) -> settings_pb2.UserSettings:
        with _errors(context):
            return self.store.read(lambda txn: user_settings.get(txn, self.store.dbs, request.user))

    def PutSettings(
        self, request: settings_pb2.PutSettingsRequest, context: grpc.ServicerContext
    ) -> settings_pb2.UserSettings:
        with _errors(context):
            clean = user_settings.validated(request.settings)

            def op(ctx: WriteContext) -> settings_pb2.UserSettings:
                return user_settings.put(ctx.txn, ctx.dbs, clean)

            saved = self.store.write(self._epoch(request.epoch), op)
            if clean.disabled:
                self.store.logins.forget_user(clean.user)
            return saved

    def RecordDeliveries(
        self, request: settings_pb2.RecordDeliveriesRequest, context: grpc.ServicerContext
    ) -> settings_pb2.RecordDeliveriesReply:
        with _errors(context):
            records = list(request.records)

            def op(ctx: WriteContext) -> int:
                return delivery_log.record(ctx.txn, ctx.dbs, records)

            return settings_pb2.RecordDeliveriesReply(kept=self.store.write(self._epoch(request.epoch), op))

    def SearchDeliveries(
        self, request: settings_pb2.SearchDeliveriesRequest, context: grpc.ServicerContext
    ) -> settings_pb2.SearchDeliveriesReply:
        with _errors(context):
            found = self.store.read(lambda txn: delivery_log.search(txn, self.store.dbs, request))
            return settings_pb2.SearchDeliveriesReply(records=found)
