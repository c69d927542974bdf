"""Issue 9 item 13: the store API surface. Reflection only on request; every
state-changing admin RPC carries the caller's epoch and is refused when stale."""

from __future__ import annotations

import os
import pathlib
import stat

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from mailha_api import store_pb2
from tests.store_fixtures import StoreServer, rpc_status


def list_services(server: StoreServer) -> set[str] | grpc.StatusCode:
    with server.client() as c:
        refl = reflection_pb2_grpc.ServerReflectionStub(c.channel)
        try:
            answers = list(
                refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
            )
        except grpc.RpcError as exc:
            return rpc_status(exc)[0]
        return {s.name for s in answers[0].list_services_response.service}


def test_reflection_is_off_unless_asked_for(tmp_path: pathlib.Path) -> None:
    plain = StoreServer(tmp_path / "a", tmp_path / "a.sock").start()
    try:
        assert list_services(plain) == grpc.StatusCode.UNIMPLEMENTED
    finally:
        plain.stop()
    debug = StoreServer(tmp_path / "b", tmp_path / "b.sock", extra_args=("--fence-next", "--reflection")).start()
    try:
        services = list_services(debug)
        assert isinstance(services, set) and "mailha.store.v1.MailStore" in services
    finally:
        debug.stop()


def test_stale_epoch_cannot_suspend_or_resume_writes(tmp_path: pathlib.Path) -> None:
    server = StoreServer(tmp_path / "store", tmp_path / "s.sock", extra_args=("--fence", "5")).start()
    try:
        assert stat.S_IMODE(os.stat(server.socket_path).st_mode) == 0o600
        with server.client() as c:
            stub = c.stub
            for stale in (0, 4):
                with pytest.raises(grpc.RpcError) as info:
                    stub.SetWritable(store_pb2.SetWritableRequest(epoch=stale, writable=False), timeout=5)
                code, text = rpc_status(info.value)
                assert code == grpc.StatusCode.FAILED_PRECONDITION and text.startswith("fenced:"), text
                assert stub.GetEpoch(store_pb2.GetEpochRequest()).writable  # nothing changed
            assert c.create_user("alice", "pw", epoch=5).name == "alice"  # writes go on

            with pytest.raises(grpc.RpcError) as info:  # nor can a stale caller lower the epoch
                stub.Fence(store_pb2.FenceRequest(epoch=4), timeout=5)
            assert rpc_status(info.value)[0] == grpc.StatusCode.FAILED_PRECONDITION

            assert not stub.SetWritable(store_pb2.SetWritableRequest(epoch=5, writable=False)).writable
            with pytest.raises(grpc.RpcError) as info:
                stub.SetWritable(store_pb2.SetWritableRequest(epoch=4, writable=True), timeout=5)
            assert rpc_status(info.value)[0] == grpc.StatusCode.FAILED_PRECONDITION
            assert not stub.GetEpoch(store_pb2.GetEpochRequest()).writable
            assert stub.SetWritable(store_pb2.SetWritableRequest(epoch=5, writable=True)).writable
    finally:
        server.stop()
