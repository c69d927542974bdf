"""The flag and header indexes (store/mailbox_index.py) against the message records.

Every write path that changes message records must change the indexes in the same
transaction: each test ends with `disagreements() == []`, so a path that forgets one
fails here even when the answer it gives happens to be right. The kill -9 test checks
the same after a store process dies in the middle of APPEND, STORE and EXPUNGE.
"""

from __future__ import annotations

import array
import pathlib
import random
import threading
import time
from collections.abc import Callable

import grpc
import lmdb
import pytest

from mailha_api import mailbox_index_pb2 as ipb
from mailha_api import mailbox_index_pb2_grpc, store_pb2
from mailparse.search_fields import indexed_needle
from store import bodies, flag_index, index_scan, mailbox_index
from store.bodies import BodySource
from store.client import StoreClient
from store.engine import MailStore, StoreOptions
from store.schema import MSG_KEY
from tests.store_fixtures import StoreServer

KEYWORDS = ("\\Seen", "\\Flagged", "\\Deleted", "\\Answered", "$Junk", "work")
SUBJECTS = ("hello world", "=?UTF-8?B?w4RwZmVs?= tree", "Quarterly report", "re: lunch", "")


def _message(n: int) -> bytes:
    subject = SUBJECTS[n % len(SUBJECTS)]
    return (
        f"From: User {n} <u{n}@example.org>\r\nTo: team@example.org\r\nSubject: {subject} {n}\r\n"
        f"Message-ID: <{n}@example.org>\r\n\r\nbody {n}\r\n"
    ).encode()


def _append(store: MailStore, n: int, mailbox: str = "INBOX", flags: tuple[str, ...] = ()) -> int:
    data = _message(n)
    header = store_pb2.AppendHeader(
        epoch=1, user="alice", mailbox=mailbox, flags=list(flags), size=len(data), internal_date=1_700_000_000 + n
    )
    return store.append(header, BodySource(len(data), data=data)).uid


def _mid(store: MailStore, name: str = "INBOX") -> int:
    return store.status("alice", name).mailbox_id


def _check(store: MailStore) -> None:
    with store.env.begin() as txn:
        assert mailbox_index.disagreements(txn, store.dbs) == []


def _scan(
    store: MailStore, name: str, uid_set: str, queries: tuple[tuple[int, bytes], ...] = ()
) -> list[ipb.IndexChunk]:
    req = ipb.IndexScanRequest(
        user="alice",
        mailbox_id=_mid(store, name),
        uid_set=uid_set,
        with_sizes_dates=True,
        header_queries=[ipb.HeaderQuery(field=f, needle=n) for f, n in queries],
    )
    return list(store.scan_index(req))


def _uids(raw: bytes) -> list[int]:
    return list(array.array("I", raw))


def test_every_write_path_keeps_the_indexes_in_step(tmp_path: pathlib.Path) -> None:
    store = MailStore(StoreOptions(data_dir=tmp_path / "s"))
    store.fence(1)
    try:
        store.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="pw"))
        rng = random.Random(7)
        for n in range(300):
            flags = tuple(sorted(rng.sample(KEYWORDS, rng.randint(0, 2))))
            _append(store, n, flags=flags)
        _check(store)
        mid = _mid(store)
        store.expunge(store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=mid, uid_set="60:140"))
        with store.env.begin() as txn:  # STATUS RECENT's count, from the segments
            uids = [
                u
                for m, u in (MSG_KEY.unpack(k) for k in txn.cursor(db=store.dbs.messages).iternext(values=False))
                if m == mid
            ]
            for low in (1, 2, 63, 64, 65, 100, 141, 200, 299, 300, 301, 10_000):
                assert flag_index.count_from(txn, store.dbs.flag_index, mid, low) == sum(u >= low for u in uids), low
        for _ in range(20):
            lo = rng.randint(1, 300)
            mode = rng.choice([store_pb2.FLAG_MODE_ADD, store_pb2.FLAG_MODE_REMOVE, store_pb2.FLAG_MODE_REPLACE])
            store.store_flags(
                store_pb2.StoreFlagsRequest(
                    epoch=1,
                    user="alice",
                    mailbox_id=mid,
                    uid_set=f"{lo}:{lo + rng.randint(0, 40)}",
                    mode=mode,
                    flags=rng.sample(KEYWORDS, 2),
                )
            )
        _check(store)
        store.create_mailbox(store_pb2.CreateMailboxRequest(epoch=1, user="alice", name="Archive2"))
        copy = store_pb2.CopyRequest(epoch=1, user="alice", mailbox_id=mid, uid_set="1:50", dest_mailbox="Archive2")
        store.copy(copy, move=False)
        move = store_pb2.CopyRequest(epoch=1, user="alice", mailbox_id=mid, uid_set="51:80", dest_mailbox="Archive2")
        store.copy(move, move=True)
        _check(store)
        store.expunge(store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=mid))
        store.expunge(store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=_mid(store, "Archive2")))
        _check(store)
        store.rename_mailbox(store_pb2.RenameMailboxRequest(epoch=1, user="alice", old_name="INBOX", new_name="Old"))
        _check(store)
        _append(store, 1000)
        store.delete_mailbox(store_pb2.DeleteMailboxRequest(epoch=1, user="alice", name="Archive2"))
        _check(store)
        with store.env.begin() as txn:
            assert txn.stat(store.dbs.flag_index)["entries"] > 0  # the check above compared something
    finally:
        store.close()


def test_scan_answers_ranges_and_header_queries(tmp_path: pathlib.Path) -> None:
    store = MailStore(StoreOptions(data_dir=tmp_path / "s"))
    store.fence(1)
    try:
        store.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="pw"))
        for n in range(1, 201):
            _append(store, n, flags=("\\Seen",) if n % 3 else ())
        subject = indexed_needle("SUBJECT", "ÄPFEL")  # an RFC 2047 word, decoded and casefolded
        assert subject is not None
        chunks = _scan(store, "INBOX", "5:70,150:*", (subject,))
        uids = [u for c in chunks for u in _uids(c.uids)]
        assert uids == [*range(5, 71), *range(150, 201)]
        flag_sets = {fs.id: tuple(fs.flags) for c in chunks for fs in c.flag_sets}
        ids = [i for c in chunks for i in _uids(c.flag_ids)]
        assert [("\\Seen",) if u % 3 else () for u in uids] == [flag_sets[i] for i in ids]
        sizes = [s for c in chunks for s in array.array("Q", c.sizes)]
        assert sizes == [len(_message(u)) for u in uids]
        dates = [d for c in chunks for d in array.array("q", c.dates)]
        assert dates == [1_700_000_000 + u for u in uids]
        hits = _uids(chunks[0].header_hits[0].uids)
        assert hits == [u for u in uids if u % len(SUBJECTS) == 1]
    finally:
        store.close()


def _alice_store(data: pathlib.Path, count: int, flags: Callable[[int], tuple[str, ...]]) -> MailStore:
    store = MailStore(StoreOptions(data_dir=data))
    store.fence(1)
    store.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="pw"))
    for n in range(count):
        _append(store, n, flags=flags(n))
    return store


def _drop_databases(data: pathlib.Path, *names: bytes) -> None:
    """Make the (closed) environment look like one written before these databases existed."""
    env = lmdb.open(str(data / "lmdb"), max_dbs=32)
    with env.begin(write=True) as txn:
        for name in names:
            txn.drop(env.open_db(name, txn=txn), delete=True)
    env.close()


def test_indexes_are_built_when_an_older_environment_is_opened(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "s"
    _alice_store(data, 150, lambda n: ("\\Seen",) if n % 2 else ()).close()
    _drop_databases(data, b"flag_index", b"header_index", b"flagsets", b"flagset_ids", b"flag_members")
    store = MailStore(StoreOptions(data_dir=data))
    try:
        with store.env.begin() as txn:
            assert txn.stat(store.dbs.flag_index)["entries"] == 3  # 150 UIDs, 64 per segment
            assert txn.stat(store.dbs.flag_members)["entries"] == 3  # two flag sets and every message, a block each
        _check(store)
        assert len(_uids(_scan(store, "INBOX", "1:*")[0].uids)) == 150
    finally:
        store.close()


def test_flag_members_are_built_from_the_flag_index_when_missing(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mailbox_index, "_BUILD_BATCH", 100)  # flushed in pieces, as for a large mailbox
    data = tmp_path / "s"
    store = _alice_store(data, 600, lambda n: ("\\Seen",) if n % 3 else ("work",))
    with store.env.begin() as txn:
        before = list(txn.cursor(db=store.dbs.flag_members))
    store.close()
    _drop_databases(data, b"flag_members")  # from before the UID lists per flag set
    store = MailStore(StoreOptions(data_dir=data))
    try:
        with store.env.begin() as txn:
            assert list(txn.cursor(db=store.dbs.flag_members)) == before
            assert len(before) == 9  # 600 UIDs in 3 blocks of 256: two flag sets and every message
        _check(store)
    finally:
        store.close()


def test_indexes_agree_with_the_messages_after_kill9_during_append_store_expunge(tmp_path: pathlib.Path) -> None:
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock")
    server.start()
    with server.client() as c:
        c.create_user("alice", "pw")
        c.stub.CreateMailbox(store_pb2.CreateMailboxRequest(epoch=c.epoch(), user="alice", name="Copies"))
    try:
        for round_no in range(3):
            if round_no:
                server.start()
            with server.client() as c:
                epoch = c.epoch()
                mid = c.mailbox_id("alice", "INBOX")
            stop = threading.Event()

            def appender(stop: threading.Event = stop, epoch: int = epoch) -> None:
                with StoreClient(server.address, timeout=10) as client:
                    n = 0
                    while not stop.is_set():
                        n += 1
                        try:
                            client.append_bytes("alice", "INBOX", _message(n), epoch=epoch)
                        except grpc.RpcError:
                            return

            def flagger(stop: threading.Event = stop, epoch: int = epoch, mid: int = mid, seed: int = round_no) -> None:
                rng = random.Random(seed)
                with StoreClient(server.address, timeout=10) as client:
                    while not stop.is_set():
                        lo = rng.randint(1, 400)
                        req = store_pb2.StoreFlagsRequest(
                            epoch=epoch,
                            user="alice",
                            mailbox_id=mid,
                            uid_set=f"{lo}:{lo + 30}",
                            mode=store_pb2.FLAG_MODE_ADD,
                            flags=[rng.choice(KEYWORDS)],
                        )
                        expunge = store_pb2.ExpungeRequest(epoch=epoch, user="alice", mailbox_id=mid)
                        try:
                            client.stub.StoreFlags(req)
                            if rng.random() < 0.2:
                                client.stub.Expunge(expunge)
                        except grpc.RpcError:
                            return

            def copier(stop: threading.Event = stop, epoch: int = epoch, mid: int = mid, seed: int = round_no) -> None:
                # COPY raises body references, EXPUNGE of the copies lowers them (store/bodies.py).
                rng = random.Random(seed + 100)
                with StoreClient(server.address, timeout=10) as client:
                    while not stop.is_set():
                        lo = rng.randint(1, 400)
                        req = store_pb2.CopyRequest(
                            epoch=epoch, user="alice", mailbox_id=mid, uid_set=f"{lo}:{lo + 50}", dest_mailbox="Copies"
                        )
                        try:
                            client.stub.Copy(req)
                        except grpc.RpcError:
                            return

            threads = [threading.Thread(target=appender) for _ in range(3)]
            threads += [threading.Thread(target=flagger) for _ in range(2)]
            threads += [threading.Thread(target=copier)]
            for t in threads:
                t.start()
            time.sleep(0.8 + 0.2 * round_no)
            server.kill9()
            stop.set()
            for t in threads:
                t.join(15)
    finally:
        server.stop()
    store = MailStore(StoreOptions(data_dir=tmp_path / "store"))
    try:
        with store.env.begin() as txn:
            assert txn.stat(store.dbs.messages)["entries"] > 20, "too little was written for the test to mean much"
            assert mailbox_index.disagreements(txn, store.dbs) == []
            assert txn.stat(store.dbs.body_refs)["entries"] > 0, "no COPY was committed before the kills"
            assert bodies.reference_disagreements(txn, store.dbs) == []
    finally:
        store.close()


def test_the_index_service_is_served_by_the_store_process(tmp_path: pathlib.Path) -> None:
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock")
    server.start()
    try:
        with server.client() as c:
            c.create_user("alice", "pw")
            for n in range(3):
                c.append_bytes("alice", "INBOX", _message(n), epoch=c.epoch())
            mid = c.mailbox_id("alice", "INBOX")
            stub = mailbox_index_pb2_grpc.MailboxIndexStub(c.channel)
            chunks = list(stub.Scan(ipb.IndexScanRequest(user="alice", mailbox_id=mid, uid_set="2:*")))
            assert [u for ch in chunks for u in _uids(ch.uids)] == [2, 3]
            try:
                list(stub.Scan(ipb.IndexScanRequest(user="alice", mailbox_id=mid + 99, uid_set="1:*")))
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND
            else:
                raise AssertionError("a scan of a missing mailbox must fail NOT_FOUND")
    finally:
        server.stop()


def test_a_flag_list_longer_than_an_lmdb_key_is_interned(tmp_path: pathlib.Path) -> None:
    # 100 keywords of 100 characters (within the per-mailbox keyword bounds): a 10 KB flag
    # list, far beyond LMDB's 511-byte keys. It was refused with MDB_BAD_VALSIZE.
    store = MailStore(StoreOptions(data_dir=tmp_path / "s"))
    store.fence(1)
    try:
        store.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="pw"))
        many = tuple(f"k{i:03d}" + "x" * 96 for i in range(100))
        first = _append(store, 1, flags=many)
        second = _append(store, 2, flags=many)
        _append(store, 3, flags=many[:50])
        chunks = _scan(store, "INBOX", "1:*")
        ids = [fid for chunk in chunks for fid in _uids(chunk.flag_ids)]
        assert len(ids) == 3 and ids[0] == ids[1] != ids[2]
        sets = {fs.id: tuple(fs.flags) for chunk in chunks for fs in chunk.flag_sets}
        assert set(sets[ids[0]]) == set(many) and set(sets[ids[2]]) == set(many[:50])
        assert (first, second) == (1, 2)
        _check(store)
    finally:
        store.close()


def _rows(chunks: list[ipb.IndexChunk]) -> list[tuple[int, tuple[str, ...]]]:
    assert [c.last for c in chunks] == [False] * (len(chunks) - 1) + [True]  # only the final chunk says so
    names = {fs.id: tuple(fs.flags) for chunk in chunks for fs in chunk.flag_sets}
    return [
        (uid, names[fid]) for chunk in chunks for uid, fid in zip(_uids(chunk.uids), _uids(chunk.flag_ids), strict=True)
    ]


def test_a_flag_filter_without_modseqs_answers_like_the_segments(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The UID lists per flag set (flag_members) give the rows the segment scan gives, for
    flag filters over ranges, after appends, STOREs and EXPUNGEs; also when several flag sets
    hold more than index_scan merges itself (then it falls back to the segments)."""
    rng = random.Random(11)
    store = _alice_store(tmp_path / "s", 700, lambda n: tuple(sorted(rng.sample(KEYWORDS, rng.randint(0, 2)))))
    try:
        mid = _mid(store)
        for _ in range(15):
            lo = rng.randint(1, 700)
            store.store_flags(
                store_pb2.StoreFlagsRequest(
                    epoch=1,
                    user="alice",
                    mailbox_id=mid,
                    uid_set=f"{lo}:{lo + rng.randint(0, 90)}",
                    mode=rng.choice([store_pb2.FLAG_MODE_ADD, store_pb2.FLAG_MODE_REMOVE]),
                    flags=rng.sample(KEYWORDS, 1),
                )
            )
        store.expunge(store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=mid, uid_set="100:300"))
        filters: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
            ((), ("\\Seen",)),
            (("\\Seen",), ()),
            (("\\seen", "work"), ("\\Deleted",)),
            (("nothing",), ()),
        ]
        compared = 0
        for merge_max, chunk_messages in ((index_scan.MERGE_MAX, index_scan.CHUNK_MESSAGES), (3, 64)):
            monkeypatch.setattr(index_scan, "MERGE_MAX", merge_max)
            monkeypatch.setattr(index_scan, "CHUNK_MESSAGES", chunk_messages)  # several chunks, either way
            for uid_set in ("1:*", "5:90,250:400,650:*", "690"):
                for held, absent in filters:
                    answers = [
                        _rows(
                            list(
                                store.scan_index(
                                    ipb.IndexScanRequest(
                                        user="alice",
                                        mailbox_id=mid,
                                        uid_set=uid_set,
                                        with_flags=held,
                                        without_flags=absent,
                                        without_modseqs=lists,
                                    )
                                )
                            )
                        )
                        for lists in (True, False)
                    ]
                    by_lists, by_segments = answers
                    assert by_lists == by_segments, (uid_set, held, absent, merge_max)
                    compared += len(by_lists)
        assert compared > 500
        _check(store)
    finally:
        store.close()
