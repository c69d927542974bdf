"""imapd's store client with `--store-data`: SELECT, STATUS, LIST and FETCH read the
store's LMDB directly; the answers and the errors must be what the gRPC calls give."""

from __future__ import annotations

import pathlib
from collections.abc import Awaitable, Callable

import trio

from imapd.errors import StoreError, StoreErrorKind
from imapd.store_client import FetchRequest, IndexQuery
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

    async def scan(query: IndexQuery, box: int = 1) -> list[object]:
        out: list[object] = []
        async for cols in store.scan_index("ann", box, query):
            out.append((list(cols.uids), list(cols.flag_ids), list(cols.modseqs), list(cols.sizes), cols.header_hits))
            out.append(sorted(cols.flag_sets.items()))
        return out

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
        lambda: scan(IndexQuery("1:*", with_sizes_dates=True, header_queries=((0, b"n1"),))),
        lambda: scan(IndexQuery("1:*", without_flags=("\\seen",))),
        lambda: scan(IndexQuery("2:*", with_flags=("\\Seen", "work"), without_flags=("\\Flagged",))),
        lambda: scan(IndexQuery("1:*", with_flags=("nothing",))),
        lambda: store.select("ann", "No such folder"),
        lambda: store.status("nobody", "INBOX"),
        lambda: fetch("x:y", False),
        lambda: store.fetch("ann", 999, FetchRequest("1")).__anext__(),
        lambda: scan(IndexQuery("1:*"), box=999),
        lambda: scan(IndexQuery("x:y")),
    ]
    return [await _outcome(call) for call in calls]


def test_local_reads_answer_and_fail_like_grpc(tmp_path: pathlib.Path) -> None:
    server = StoreServer(tmp_path / "data", tmp_path / "s.sock").start()
    try:
        with server.client() as client:
            client.create_user("ann", "ann-secret")
            flag_lists = [(), ("\\Seen", "work"), ("\\Seen",), ("\\Seen", "\\Flagged", "work"), ("\\SEEN", "Work")]
            for i, flags in enumerate(flag_lists):
                client.append_bytes("ann", "INBOX", b"Subject: n%d\r\n\r\nbody %d\r\n" % (i, i), flags)
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
    assert remote_answers[-6:] == [
        StoreErrorKind.NOT_FOUND,
        StoreErrorKind.NOT_FOUND,
        StoreErrorKind.INVALID,
        StoreErrorKind.NOT_FOUND,
        StoreErrorKind.NOT_FOUND,
        StoreErrorKind.INVALID,
    ]
    assert len(local_answers[4]) == 5  # type: ignore[arg-type]
    # The flag filters: only the messages that hold / lack the flags (without case).
    assert [answer[0][0] for answer in local_answers[7:10]] == [  # type: ignore[index]
        [1],
        [2, 5],
        [],
    ]
