"""zstd body compression (store/body_codec.py): where it pays, transparent to every read, old bodies unchanged."""

from __future__ import annotations

import pathlib
import random

from mailha_api import store_pb2
from store import bodies, messages
from store.bodies import BodySource
from store.committer import WriteContext
from store.engine import MailStore, StoreOptions
from store.schema import BODY_META, CHUNK_KEY, CHUNK_SIZE, U64


def _store(tmp_path: pathlib.Path) -> MailStore:
    store = MailStore(StoreOptions(data_dir=tmp_path / "s", max_message_size=4 * 1024 * 1024))
    store.fence(1)
    store.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="pw"))
    return store


def _append(store: MailStore, data: bytes) -> int:
    header = store_pb2.AppendHeader(epoch=1, user="alice", mailbox="INBOX", size=len(data))
    return store.append(header, BodySource(len(data), data=data)).uid


def _mid(store: MailStore) -> int:
    return store.status("alice", "INBOX").mailbox_id


def _body(store: MailStore, uid: int, offset: int = 0, length: int = 0) -> bytes:
    req = store_pb2.FetchRequest(
        user="alice", mailbox_id=_mid(store), uid_set=str(uid), with_body=True, body_offset=offset, body_length=length
    )
    return b"".join(r.chunk.data for r in store.fetch(req) if r.HasField("chunk"))


def _compressed(store: MailStore, uid: int) -> bool:
    with store.env.begin() as txn:
        rec = dict(messages.all_messages(txn, store.dbs, _mid(store)))[uid]
        return bodies.is_compressed(txn, store.dbs, rec.body_id)


def _text(size: int) -> bytes:
    rng = random.Random(size)
    words = [b"meeting", b"report", b"quarterly", b"the", b"of", b"budget", b"lunch"]
    out = b"Subject: text\r\n\r\n"
    while len(out) < size:
        out += b" ".join(rng.choice(words) for _ in range(10)) + b"\r\n"
    return out[:size]


def test_text_bodies_are_stored_compressed_and_read_back_whole_and_in_ranges(tmp_path: pathlib.Path) -> None:
    store = _store(tmp_path)
    try:
        small = _text(6000)
        big = _text(3 * CHUNK_SIZE + 1234)  # several chunks: a range across a chunk boundary
        u1, u2 = _append(store, small), _append(store, big)
        assert _compressed(store, u1) and _compressed(store, u2)
        assert _body(store, u1) == small and _body(store, u2) == big
        assert _body(store, u2, CHUNK_SIZE - 10, 30) == big[CHUNK_SIZE - 10 : CHUNK_SIZE + 20]
        assert _body(store, u2, 2 * CHUNK_SIZE + 5, 0) == big[2 * CHUNK_SIZE + 5 :]
        batch = store.fetch_batch(
            store_pb2.FetchRequest(user="alice", mailbox_id=_mid(store), uid_set="1:*", with_body=True)
        )
        assert list(batch.bodies) == [small, big]
        with store.env.begin() as txn:
            stored = sum(len(v) for _, v in txn.cursor(db=store.dbs.body_chunks))
        assert stored * 3 < len(small) + len(big)  # it paid
    finally:
        store.close()


def test_tiny_and_incompressible_bodies_are_stored_as_they_came(tmp_path: pathlib.Path) -> None:
    store = _store(tmp_path)
    try:
        tiny = b"Subject: x\r\n\r\nhi\r\n"
        noise = b"Subject: y\r\n\r\n" + random.Random(3).randbytes(20_000)
        u1, u2 = _append(store, tiny), _append(store, noise)
        assert not _compressed(store, u1) and not _compressed(store, u2)
        assert _body(store, u1) == tiny and _body(store, u2) == noise
    finally:
        store.close()


def test_bodies_written_before_compression_still_read(tmp_path: pathlib.Path) -> None:
    store = _store(tmp_path)
    try:
        data = _text(9000)
        item = messages.NewMessage(BodySource(len(data), data=data), (), 0, 0)  # no `packed`: the old path
        store.write(1, lambda ctx: messages.append(ctx.txn, ctx.dbs, "alice", _mid(store), [item]))
        assert not _compressed(store, 1)
        assert _body(store, 1) == data and _body(store, 1, 100, 50) == data[100:150]
    finally:
        store.close()


def test_copy_and_expunge_keep_the_compressed_flag_and_free_the_chunks(tmp_path: pathlib.Path) -> None:
    store = _store(tmp_path)
    try:
        data = _text(7000)
        _append(store, data)
        store.create_mailbox(store_pb2.CreateMailboxRequest(epoch=1, user="alice", name="Other"))
        store.copy(
            store_pb2.CopyRequest(epoch=1, user="alice", mailbox_id=_mid(store), uid_set="1", dest_mailbox="Other"),
            move=False,
        )
        flags = store_pb2.StoreFlagsRequest(
            epoch=1,
            user="alice",
            mailbox_id=_mid(store),
            uid_set="1",
            mode=store_pb2.FLAG_MODE_ADD,
            flags=["\\Deleted"],
        )
        store.store_flags(flags)
        store.expunge(store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=_mid(store)))
        other = store.status("alice", "Other").mailbox_id
        req = store_pb2.FetchRequest(user="alice", mailbox_id=other, uid_set="1", with_body=True)
        assert b"".join(r.chunk.data for r in store.fetch(req) if r.HasField("chunk")) == data  # still shared, intact
        store.delete_mailbox(store_pb2.DeleteMailboxRequest(epoch=1, user="alice", name="Other"))
        with store.env.begin() as txn:
            assert txn.stat(store.dbs.body_chunks)["entries"] == 0
            assert txn.stat(store.dbs.body_meta)["entries"] == 0
    finally:
        store.close()


def test_compressed_chunks_are_stored_in_leaf_sized_pieces_and_read_across_them(tmp_path: pathlib.Path) -> None:
    """A ~6 KB message compresses to ~2.5 KB: stored whole, LMDB gave it a 4 KiB overflow page;
    in pieces of at most PIECE_MAX bytes it shares leaf pages (store/bodies.py, SPLIT)."""
    store = _store(tmp_path)
    try:
        datas = [_text(5000 + 97 * i) + b"\r\nserial %d\r\n" % i for i in range(40)]
        uids = [_append(store, d) for d in datas]
        with store.env.begin() as txn:
            stat = txn.stat(store.dbs.body_chunks)
            sizes = [len(v) for _, v in txn.cursor(db=store.dbs.body_chunks)]
        assert stat["overflow_pages"] == 0 and stat["entries"] > len(datas)  # several pieces per body
        assert max(sizes) <= bodies.PIECE_MAX
        for uid, data in zip(uids, datas, strict=True):
            assert _compressed(store, uid) and _body(store, uid) == data
            assert _body(store, uid, 999, 2345) == data[999 : 999 + 2345]
    finally:
        store.close()


def test_compressed_bodies_stored_whole_before_pieces_still_read_and_are_freed(tmp_path: pathlib.Path) -> None:
    store = _store(tmp_path)
    try:
        data = _text(9000)
        uid = _append(store, data)

        def as_before(ctx: WriteContext) -> None:  # one compressed value per chunk, SPLIT clear
            rec = dict(messages.all_messages(ctx.txn, ctx.dbs, _mid(store)))[uid]
            key = U64.pack(rec.body_id)
            found = ctx.txn.get(key, db=ctx.dbs.body_meta)
            assert found is not None
            meta = bytes(found)
            refs, size = BODY_META.unpack_from(meta)
            cur = ctx.txn.cursor(db=ctx.dbs.body_chunks)
            assert cur.set_range(CHUNK_KEY.pack(rec.body_id, 0))
            whole = b""
            while bytes(cur.key()[:8]) == key:
                whole += bytes(cur.value())
                cur.delete()
            ctx.txn.put(CHUNK_KEY.pack(rec.body_id, 0), whole, db=ctx.dbs.body_chunks)
            meta = BODY_META.pack(refs & ~bodies.SPLIT, size) + meta[BODY_META.size :]
            ctx.txn.put(key, meta, db=ctx.dbs.body_meta)

        store.write(1, as_before)
        assert _compressed(store, uid) and _body(store, uid) == data and _body(store, uid, 10, 20) == data[10:30]
        mode = store_pb2.FLAG_MODE_ADD
        store.store_flags(
            store_pb2.StoreFlagsRequest(
                epoch=1, user="alice", mailbox_id=_mid(store), uid_set=str(uid), mode=mode, flags=["\\Deleted"]
            )
        )
        store.expunge(store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=_mid(store)))
        with store.env.begin() as txn:
            assert txn.stat(store.dbs.body_chunks)["entries"] == 0
    finally:
        store.close()
