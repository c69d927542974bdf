"""lmtpd's appends over the store's local write socket (lmtpd/store_gateway.py beside the
store): the same answers, stored messages and delivery-log lines as over gRPC; gRPC when
the socket is missing or a request is over the frame limit; and a kill -9 of the store
with deliveries in flight (every acknowledged message is on disk)."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import grpc
import pytest
import trio

from lmtpd.delivery import DeliveryResult, Outcome, Recipient
from lmtpd.settings_drop import PersonalOptions, SettingsMailDrop
from lmtpd.spool import Spool
from lmtpd.store_gateway import GrpcMailDrop
from mailha_api import settings_pb2, settings_pb2_grpc, store_pb2
from store.local_frames import MAX_FRAME, socket_path
from tests.store_fixtures import StoreServer

pytestmark = pytest.mark.integration

QUOTA = 4000
ALICE = Recipient("alice@example.test", "alice")
Answers = list[list[tuple[Outcome, int, str]]]


def _body(text: bytes) -> Spool:
    spool = Spool()
    spool.write(text)
    return spool


def _message(token: str, size: int = 0) -> bytes:
    head = f"From: s@example.test\r\nMessage-ID: <{token}>\r\nSubject: {token}\r\n\r\n".encode()
    return head + b"x" * max(0, size - len(head) - 2) + b"\r\n"


def _prefix(user: str) -> bytes:
    return f"Return-Path: <s@example.test>\r\nDelivered-To: {user}@example.test\r\n".encode()


async def _deliver(
    drop: SettingsMailDrop | GrpcMailDrop, users: Sequence[str], text: bytes
) -> list[tuple[Outcome, int, str]]:
    session = drop.session()
    body = _body(text)
    try:
        recipients = [Recipient(f"{u}@example.test", u) for u in users]
        results: list[DeliveryResult] = await session.deliver(recipients, [_prefix(u) for u in users], body)
    finally:
        body.close()
        await session.aclose()
    return [(r.outcome, r.uid, r.detail) for r in results]


async def _exercise(drop: SettingsMailDrop, user: str, other: str) -> Answers:
    """Deliveries, a retry, two recipients in one transaction, an unknown user, over quota."""
    out: Answers = []
    for i in range(3):
        out.append(await _deliver(drop, [user], _message(f"m{i}")))
    out.append(await _deliver(drop, [user], _message("m0")))  # the MTA's retry: stored once
    out.append(await _deliver(drop, [user, other], _message("both")))
    out.append(await _deliver(drop, ["nobody"], _message("lost")))
    out.append(await _deliver(drop, [user], _message("big", QUOTA)))
    return [
        [(outcome, uid, detail.replace(user, "<user>").replace(other, "<other>")) for outcome, uid, detail in o]
        for o in out
    ]


def _log(address: str, user: str) -> list[tuple[str, str, int]]:
    with grpc.insecure_channel(address) as channel:
        stub = settings_pb2_grpc.SettingsStub(channel)
        records = stub.SearchDeliveries(settings_pb2.SearchDeliveriesRequest(limit=1000, user=user), timeout=30).records
    return sorted((r.message_id, r.result, r.reply_code) for r in records)


def _inbox(server: StoreServer, user: str) -> list[int]:
    with server.client() as c:
        return list(c.select(user, "INBOX").uids)


def test_lmtpd_delivers_over_the_socket_with_the_same_answers_as_grpc(store_server: StoreServer) -> None:
    with store_server.client() as c:
        epoch = c.epoch()
        for user in ("grpcuser", "sockuser", "grpcother", "sockother"):
            c.create_user(user, "pw", quota=QUOTA)

    async def main() -> tuple[Answers, Answers, int]:
        remote = GrpcMailDrop(store_server.address, epoch)
        local = GrpcMailDrop(store_server.address, epoch, store_data=store_server.data_dir)
        remote_rules = SettingsMailDrop(remote, store_server.address, epoch, PersonalOptions())
        local_rules = SettingsMailDrop(local, store_server.address, epoch, PersonalOptions())
        try:
            over_grpc = await _exercise(remote_rules, "grpcuser", "grpcother")
            over_socket = await _exercise(local_rules, "sockuser", "sockother")
            assert remote.local_writes is None
            assert local.local_writes is not None
            return over_grpc, over_socket, local.local_writes.answered
        finally:
            local.close_local_writes()
            for drop in (remote_rules, local_rules, remote, local):
                drop.close()

    over_grpc, over_socket, answered = trio.run(main)
    assert over_socket == over_grpc
    # Every append went over the socket (the unknown user's too: the store refused it there).
    assert answered == 3 + 1 + 2 + 1 + 1
    flat = [entry for delivery in over_socket for entry in delivery]
    assert (Outcome.DELIVERED, 1, "already delivered (a retry)") in flat
    assert [e[0] for e in flat[-2:]] == [Outcome.NO_SUCH_USER, Outcome.OVER_QUOTA]
    assert _inbox(store_server, "sockuser") == _inbox(store_server, "grpcuser") == [1, 2, 3, 4]
    # Each stored message's log line came with its append, once (the retry logged nothing twice).
    assert _log(store_server.address, "sockuser") == _log(store_server.address, "grpcuser")
    assert [line[0] for line in _log(store_server.address, "sockuser")].count("<m0>") == 1


def test_lmtpd_delivers_over_grpc_without_the_socket_and_above_the_frame_limit(store_server: StoreServer) -> None:
    with store_server.client() as c:
        epoch = c.epoch()
        c.create_user("alice", "pw")
    os.unlink(socket_path(store_server.data_dir))  # as a store that could not make it

    async def main() -> None:
        drop = GrpcMailDrop(store_server.address, epoch, store_data=store_server.data_dir)
        assert drop.local_writes is not None
        try:
            assert await _deliver(drop, ["alice"], _message("a")) == [(Outcome.DELIVERED, 1, "")]
            assert drop.local_writes.answered == 0
            assert not drop.local_writes.ready()  # gRPC for a while, without knocking each time
            assert await _deliver(drop, ["alice"], _message("b")) == [(Outcome.DELIVERED, 2, "")]
        finally:
            drop.close_local_writes()
            drop.close()

    trio.run(main)


def test_a_message_over_the_frame_limit_goes_over_grpc(tmp_path: pathlib.Path) -> None:
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock").start()
    try:
        with server.client() as c:
            epoch = c.epoch()
            c.create_user("alice", "pw")

        big = _message("big", MAX_FRAME + 1024)

        async def main() -> None:
            drop = GrpcMailDrop(server.address, epoch, store_data=server.data_dir)
            assert drop.local_writes is not None
            try:
                assert await _deliver(drop, ["alice"], _message("small")) == [(Outcome.DELIVERED, 1, "")]
                assert drop.local_writes.answered == 1
                assert await _deliver(drop, ["alice"], big) == [(Outcome.DELIVERED, 2, "")]
                assert drop.local_writes.answered == 1  # streamed in pieces over AppendPipeline
                assert drop.local_writes.ready()  # not a refusal: the socket stays in use
            finally:
                drop.close_local_writes()
                drop.close()

        trio.run(main)
        with server.client() as c:
            box = c.select("alice", "INBOX").mailbox.mailbox_id
            assert c.fetch_body("alice", box, 2) == _prefix("alice") + big
    finally:
        server.stop()


def test_kill9_with_deliveries_in_flight_acknowledges_only_what_is_on_disk(tmp_path: pathlib.Path) -> None:
    """Eight LMTP sessions delivering over the socket when the store dies: each delivery is
    acknowledged or gets a temporary failure (no hang), every acknowledged message is on disk,
    and deliveries go over the socket again once the store is back."""
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock", ("--fence", "1")).start()
    with server.client() as c:
        epoch = c.epoch()
        c.create_user("alice", "pw")
    acked: dict[int, str] = {}  # uid -> token
    failures: list[Outcome] = []

    async def sender(drop: GrpcMailDrop, n: int, stop: trio.Event) -> None:
        session = drop.session()
        try:
            for i in range(100_000):
                if stop.is_set():
                    return
                token = f"s{n}-{i}"
                body = _body(_message(token))
                try:
                    [result] = await session.deliver(
                        [Recipient("alice@example.test", "alice")], [_prefix("alice")], body
                    )
                finally:
                    body.close()
                if result.outcome is not Outcome.DELIVERED:
                    failures.append(result.outcome)
                    return
                acked[result.uid] = token
        finally:
            await session.aclose()

    async def main() -> None:
        drop = GrpcMailDrop(server.address, epoch, store_data=server.data_dir)
        assert drop.local_writes is not None
        try:
            stop = trio.Event()
            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    for n in range(8):
                        nursery.start_soon(sender, drop, n, stop)
                    while len(acked) < 40:
                        await trio.sleep(0.01)
                    await trio.to_thread.run_sync(server.kill9)
                    stop.set()
            assert failures and all(outcome is Outcome.UNAVAILABLE for outcome in failures)
            answered = drop.local_writes.answered
            assert answered >= 40
            await trio.to_thread.run_sync(server.start)
            with trio.fail_after(30):
                while True:  # the first may go over gRPC (the socket was refused a moment ago)
                    [(outcome, uid, _)] = await _deliver(drop, ["alice"], _message("after"))
                    assert outcome is Outcome.DELIVERED
                    if drop.local_writes.answered > answered:
                        break
                    await trio.sleep(0.2)
            assert uid > max(acked)
            assert drop.local_writes.connections == 2
        finally:
            drop.close_local_writes()
            drop.close()

    try:
        trio.run(main)
        with server.client() as c:
            box = c.select("alice", "INBOX").mailbox.mailbox_id
            fetch = store_pb2.FetchRequest(user="alice", mailbox_id=box, uid_set="1:*", with_header=True)
            on_disk = {r.meta.uid: r.meta.header for r in c.stub.Fetch(fetch, timeout=30)}
        assert set(acked) <= set(on_disk)
        for uid, token in acked.items():  # and each UID holds the message it was acknowledged for
            assert f"Message-ID: <{token}>".encode() in on_disk[uid]
    finally:
        server.stop()
