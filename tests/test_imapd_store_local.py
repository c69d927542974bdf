"""imapd's store client with `--store-data`: SELECT, STATUS, LIST and FETCH read the
store's LMDB directly; the answers and the errors must be what the gRPC calls give."""

from __future__ import annotations

import pathlib
from collections.abc import Awaitable, Callable

import trio

from imapd.errors import StoreError, StoreErrorKind
from imapd.store_client import FetchRequest
from imapd.store_grpc import GrpcStore
from store.reader import LocalReader
from tests.store_fixtures import StoreServer


async def _outcome(call: Callable[[], Awaitable[object]]) -> object:
    try:
        return await call()
    except StoreError as exc:
        return exc.kind


async def _answers(store: GrpcStore) -> list[object]:
    async def fetch(uid_set: str, body: bool) -> list[object]:
        return [m async for m in store.fetch("ann", 1, FetchRequest(uid_set, with_header=True, with_body=body))]

    selected = await store.select("ann", "INBOX")
    box = selected.mailbox.mailbox_id
    assert box == 1
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.select("ann", "INBOX"),
        lambda: store.status("ann", "INBOX"),
        lambda: store.list_mailboxes("ann", with_status=True),
        lambda: store.list_mailboxes("ann", subscribed_only=True),
        lambda: fetch("1:*", True),
        lambda: fetch("2,4", False),
        lambda: store.select("ann", "No such folder"),
        lambda: store.status("nobody", "INBOX"),
        lambda: fetch("x:y", False),
        lambda: store.fetch("ann", 999, FetchRequest("1")).__anext__(),
    ]
    return [await _outcome(call) for call in calls]


def test_local_reads_answer_and_fail_like_grpc(tmp_path: pathlib.Path) -> None:
    server = StoreServer(tmp_path / "data", tmp_path / "s.sock").start()
    try:
        with server.client() as client:
            client.create_user("ann", "ann-secret")
            for i in range(4):
                client.append_bytes("ann", "INBOX", b"Subject: n%d\r\n\r\nbody %d\r\n" % (i, i))
            epoch = client.epoch()

        async def main() -> tuple[list[object], list[object]]:
            remote = GrpcStore(server.address, epoch)
            local = GrpcStore(server.address, epoch, local=LocalReader(server.data_dir))
            try:
                return await _answers(remote), await _answers(local)
            finally:
                await remote.aclose()
                await local.aclose()

        remote_answers, local_answers = trio.run(main)
    finally:
        server.stop()
    assert local_answers == remote_answers
    assert remote_answers[-4:] == [
        StoreErrorKind.NOT_FOUND,
        StoreErrorKind.NOT_FOUND,
        StoreErrorKind.INVALID,
        StoreErrorKind.NOT_FOUND,
    ]
    assert len(local_answers[4]) == 4  # type: ignore[arg-type]
