"""Operator one-shots against a running store: users, addresses, quotas.

Writes use the store's current epoch (GetEpoch): an operator command is not
a long-running writer and must not need to know the epoch. Failures become
AdminError with the store's own message.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass
from typing import Any

import grpc

from mailha_api import settings_pb2, store_pb2
from nodeconf.paths import StandalonePaths
from store.client import StoreClient

STORE_ENV = "MAILHA_STORE"


class AdminError(Exception):
    def __init__(self, message: str, code: grpc.StatusCode | None = None, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.code = code  # the store's status code, when the store answered
        self._unreachable = unreachable

    @property
    def unreachable(self) -> bool:
        """The store did not answer (down, failing over), as opposed to refusing the request."""
        return self._unreachable or self.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def resolve_store_address(store: str | None, data: pathlib.Path | None) -> str:
    """--store ADDR, else --data DIR (standalone layout), else $MAILHA_STORE."""
    if store:
        return store
    if data is not None:
        return StandalonePaths(data).store_socket
    env = os.environ.get(STORE_ENV)
    if env:
        return env
    raise AdminError(f"no store given: use --store ADDR, --data DIR (standalone) or set {STORE_ENV}")


@dataclass
class Admin:
    client: StoreClient

    @classmethod
    def connect(cls, address: str) -> Admin:
        client = StoreClient(address, timeout=30)
        try:
            client.wait_ready(timeout=5)
        except grpc.FutureTimeoutError:
            client.close()
            raise AdminError(f"cannot reach the store at {address} (is it running?)", unreachable=True) from None
        return cls(client)

    def close(self) -> None:
        self.client.close()

    def _call(self, fn: Any, request: Any) -> Any:
        try:
            return fn(request, timeout=self.client.timeout)
        except grpc.RpcError as exc:
            call: grpc.Call = exc  # type: ignore[assignment]
            raise AdminError(call.details() or str(call.code()), call.code()) from None

    def _epoch(self) -> int:
        reply = self._call(self.client.stub.GetEpoch, store_pb2.GetEpochRequest())
        return int(reply.epoch)

    def add_user(self, name: str, password: str, quota: int) -> store_pb2.UserInfo:
        if quota < 0:
            raise AdminError(f"quota {quota} is negative (0 = the server default)")
        req = store_pb2.CreateUserRequest(epoch=self._epoch(), name=name, password=password, quota_bytes=quota)
        info: store_pb2.UserInfo = self._call(self.client.stub.CreateUser, req)
        return info

    def delete_user(self, name: str) -> None:
        self._call(self.client.stub.DeleteUser, store_pb2.DeleteUserRequest(epoch=self._epoch(), name=name))

    def set_password(self, name: str, password: str) -> None:
        req = store_pb2.SetPasswordRequest(epoch=self._epoch(), name=name, password=password)
        self._call(self.client.stub.SetPassword, req)

    def list_users(self) -> list[store_pb2.UserInfo]:
        return list(self._call(self.client.stub.ListUsers, store_pb2.ListUsersRequest()).users)

    def add_address(self, address: str, user: str) -> store_pb2.AddressInfo:
        req = store_pb2.AddAddressRequest(epoch=self._epoch(), address=address, user=user)
        info: store_pb2.AddressInfo = self._call(self.client.stub.AddAddress, req)
        return info

    def delete_address(self, address: str) -> None:
        req = store_pb2.DeleteAddressRequest(epoch=self._epoch(), address=address)
        self._call(self.client.stub.DeleteAddress, req)

    def list_addresses(self, user: str) -> list[store_pb2.AddressInfo]:
        reply = self._call(self.client.stub.ListAddresses, store_pb2.ListAddressesRequest(user=user))
        return list(reply.addresses)

    def set_quota(self, user: str, limit: int) -> store_pb2.QuotaInfo:
        if limit < 0:
            raise AdminError(f"quota {limit} is negative (0 = unlimited)")
        req = store_pb2.SetQuotaRequest(epoch=self._epoch(), user=user, limit_bytes=limit)
        info: store_pb2.QuotaInfo = self._call(self.client.stub.SetQuota, req)
        return info

    def quota(self, user: str) -> store_pb2.QuotaInfo:
        info: store_pb2.QuotaInfo = self._call(self.client.stub.GetQuota, store_pb2.GetQuotaRequest(user=user))
        return info

    def get_user(self, name: str) -> store_pb2.UserInfo:
        info: store_pb2.UserInfo = self._call(self.client.stub.GetUser, store_pb2.GetUserRequest(name=name))
        return info

    def authenticate(self, login: str, password: str) -> str:
        """The user name, or AdminError (the store's generic message) for bad credentials."""
        reply = self._call(self.client.stub.Authenticate, store_pb2.AuthenticateRequest(name=login, password=password))
        return str(reply.user)

    # ---- per-user settings, roles and the delivery log (settings.proto) ------------

    def settings(self, user: str) -> settings_pb2.UserSettings:
        found: settings_pb2.UserSettings = self._call(
            self.client.settings.GetSettings, settings_pb2.GetSettingsRequest(user=user)
        )
        return found

    def put_settings(self, settings: settings_pb2.UserSettings) -> settings_pb2.UserSettings:
        saved: settings_pb2.UserSettings = self._call(
            self.client.settings.PutSettings, settings_pb2.PutSettingsRequest(settings=settings)
        )
        return saved

    def set_role(self, user: str, admin: bool) -> settings_pb2.UserSettings:
        current = self.settings(user)
        current.admin = admin
        return self.put_settings(current)

    def set_disabled(self, user: str, disabled: bool) -> settings_pb2.UserSettings:
        current = self.settings(user)
        current.disabled = disabled
        return self.put_settings(current)

    def deliveries(self, query: settings_pb2.SearchDeliveriesRequest) -> list[settings_pb2.DeliveryRecord]:
        reply = self._call(self.client.settings.SearchDeliveries, query)
        return list(reply.records)
