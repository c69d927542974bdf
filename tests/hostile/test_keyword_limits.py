"""Issue 9.8: keywords were unbounded (7,000 on one message; 3,000 in a
mailbox made SELECT's FLAGS line 76 KB), and a 20,000-character keyword came
back as NO [OVERQUOTA] (the error echoed it and overflowed the gRPC trailer).
Now: at most 128 characters per keyword and 128 distinct keywords per mailbox,
enforced by the store and checked early by imapd, answered NO [LIMIT]."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from imapd.errors import StoreError, StoreErrorKind
from imapd.store_client import AppendSpec, FlagMode
from imapd.store_grpc import GrpcStore, store_error
from store import names
from store.errors import InvalidArgument, LimitExceeded
from tests.imap_server_wire import connected, running_server, trio_test
from tests.store_fixtures import StoreServer


def test_keyword_bounds_and_bounded_messages() -> None:
    assert names.flag("k" * 128) == "k" * 128
    with pytest.raises(LimitExceeded) as too_long:
        names.flag("k" * 20_000)
    assert too_long.value.message.startswith("limit: keyword of 20000 characters")
    with pytest.raises(InvalidArgument) as invalid:
        names.flag("(" * 100)
    assert len(invalid.value.message) < 200


class _Fake(grpc.RpcError):
    def __init__(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.RESOURCE_EXHAUSTED

    def details(self) -> str:
        return self._details


def test_only_quota_errors_map_to_over_quota() -> None:
    assert store_error(_Fake("quota: user uses 10 of 5 bytes")).kind is StoreErrorKind.OVER_QUOTA
    assert store_error(_Fake("limit: 129 keywords")).kind is StoreErrorKind.LIMIT
    # What gRPC itself says when metadata or a message is too large: not a quota matter.
    assert store_error(_Fake("received trailing metadata size exceeds limit")).kind is StoreErrorKind.INTERNAL


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.mark.integration
@trio_test
async def test_store_enforces_keyword_limits(store_server: StoreServer) -> None:
    with store_server.client() as admin:
        admin.create_user("kw", "kw-pw", epoch=1)
        admin.create_user("alice", "secret", epoch=1)
    store = GrpcStore(store_server.address, 1)
    try:
        msg = b"Subject: k\r\n\r\nbody\r\n"
        result = await store.append("kw", "INBOX", AppendSpec(), len(msg), _one(msg))
        box, uid = result.mailbox_id, str(result.uids[0])
        with pytest.raises(StoreError) as huge:
            await store.store_flags("kw", box, uid, FlagMode.ADD, ["k" * 20_000])
        assert huge.value.kind is StoreErrorKind.LIMIT, huge.value
        with pytest.raises(StoreError) as many:
            await store.store_flags("kw", box, uid, FlagMode.ADD, [f"k{i}" for i in range(7000)])
        assert many.value.kind is StoreErrorKind.LIMIT
        await store.store_flags("kw", box, uid, FlagMode.ADD, [f"k{i}" for i in range(64)])
        await store.store_flags("kw", box, uid, FlagMode.REPLACE, [f"k{i}" for i in range(64, 128)])
        # The 64 replaced keywords are no longer in use: 128 distinct now, the limit.
        await store.store_flags("kw", box, uid, FlagMode.ADD, [f"k{i}" for i in range(64)])
        assert len((await store.select("kw", "INBOX")).keywords) == 128
        await store.store_flags("kw", box, uid, FlagMode.ADD, ["k5", "\\Seen"])  # known keyword: fine
        with pytest.raises(StoreError) as full:
            await store.store_flags("kw", box, uid, FlagMode.ADD, ["one-more"])
        assert full.value.kind is StoreErrorKind.LIMIT and "128" in full.value.message
        with pytest.raises(StoreError) as appended:
            await store.append("kw", "INBOX", AppendSpec(("one-more",)), len(msg), _one(msg))
        assert appended.value.kind is StoreErrorKind.LIMIT
        # Copying into a mailbox that has no room for the keywords is refused as well.
        await store.create_mailbox("kw", "Other")
        other = await store.append("kw", "Other", AppendSpec(("other-kw",)), len(msg), _one(msg))
        with pytest.raises(StoreError) as copied:
            await store.copy("kw", other.mailbox_id, str(other.uids[0]), "INBOX")
        assert copied.value.kind is StoreErrorKind.LIMIT
        await store.store_flags("kw", box, uid, FlagMode.REMOVE, ["k1"])  # removing is always fine
    finally:
        await store.aclose()


@pytest.mark.integration
@trio_test
async def test_imapd_answers_limit_not_overquota(store_server: StoreServer) -> None:
    with store_server.client() as admin:
        admin.create_user("alice", "secret", epoch=1)
        admin.create_user("bob", "hunter2", epoch=1)
    store = GrpcStore(store_server.address, 1)
    try:
        async with running_server(store) as (_server, ports, _store), connected(ports[0]) as c:
            await c.login()
            assert (await c.command(b"APPEND INBOX {5+}\r\nhi\r\n\r"))[-1].startswith(b"t2 OK")
            assert (await c.command("SELECT INBOX"))[-1].startswith(b"t3 OK")
            huge = await c.command("STORE 1 +FLAGS (" + "k" * 20_000 + ")")
            assert huge[-1].startswith(b"t4 NO [LIMIT]"), huge[-1][:80]
            many = await c.command("STORE 1 +FLAGS (" + " ".join(f"k{i}" for i in range(7000)) + ")")
            assert many[-1].startswith(b"t5 NO [LIMIT]"), many[-1][:80]
            appended = await c.command(b"APPEND INBOX (" + b"k" * 200 + b") {5+}\r\nhi\r\n\r")
            assert appended[-1].startswith(b"t6 NO [LIMIT]"), appended[-1][:80]
            for start in range(0, 128, 32):
                kws = " ".join(f"k{i}" for i in range(start, start + 32))
                assert (await c.command(f"STORE 1 +FLAGS.SILENT ({kws})"))[-1].endswith(b"OK STORE completed\r\n")
            # The store's per-mailbox bound, through imapd.
            full = await c.command("STORE 1 +FLAGS.SILENT (one-more)")
            assert b"NO [LIMIT]" in full[-1] and b"OVERQUOTA" not in full[-1]
            flags_line = next(line for line in await c.command("SELECT INBOX") if line.startswith(b"* FLAGS"))
            assert len(flags_line) < 128 * 130
    finally:
        await store.aclose()
