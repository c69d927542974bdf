"""SEARCH TEXT/BODY from the store's full-text index (store/fulltext.py) give exactly the scan's answers.

The corpus holds the MIME test messages (base64 and quoted-printable parts, charsets,
nested and embedded messages, broken ones) and generated mail; every needle is asked
with nothing indexed, with part of the mailbox indexed (the tail is scanned), with
everything indexed, and after expunges (stale rows must not show), and compared with
`search_eval`, the message-by-message evaluator.
"""

from __future__ import annotations

import array
import contextlib
import os
import pathlib
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterable

import grpc
import pytest

from imapd.message.search_eval import SearchContext, SearchEvaluator
from imapd.protocol import search_spec as S
from mailha_api import mailbox_index_pb2 as ipb
from mailha_api import store_pb2
from mailparse.view import MessageView
from store import fulltext, fulltext_worker
from store.bodies import BodySource
from store.client import StoreClient
from store.engine import MailStore, StoreOptions
from tests.store_fixtures import ROOT, StoreServer

CORPUS = pathlib.Path(__file__).parent / "data" / "mime"
NEEDLES = (
    "the",
    "e",
    "ab",
    "müller",
    "ÄPFEL",
    "strasse",
    "quillwort",
    "lunch menu",
    "content-type",
    "boundary",
    "text/plain",
    '"quoted"',
    "subject: hello",
    "=c3",
    "résumé",
    "www",
    "seen",
    "nonexistentword",
    "the\nnext",
    "illwor",  # inside a word: the index's vocabulary answers substrings, not only words
    "quillwor",
    "llwort",
    "wort grows",  # two runs: candidates checked on the text
    "é of",
    "=e9",
    "ma",
    "x-mailer:",
)


def _generated() -> list[bytes]:
    return [
        b"From: a@example.org\r\nSubject: =?UTF-8?Q?M=C3=BCller?= lunch menu\r\n\r\nThe quillwort grows.\r\n",
        b"Subject: hello\r\nContent-Type: text/plain; charset=ISO-8859-1\r\n"
        b'Content-Transfer-Encoding: quoted-printable\r\n\r\nR=E9sum=E9 of the "quoted" day\r\nthe\r\nnext line\r\n',
        b"Subject: b64\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + b"w4RwZmVsIHVuZCBTdHJhw59lIGltIHd3dw==\r\n",
        b'Subject: mixed\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/html\r\n\r\n'
        b"<p>Seen at the office</p>\r\n--b1\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"cXVpbGx3b3J0\r\n--b1--\r\n",
    ]


def _corpus() -> list[bytes]:
    return [p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))] + _generated()


def _append(store: MailStore, data: bytes) -> int:
    header = store_pb2.AppendHeader(epoch=1, user="alice", mailbox="INBOX", size=len(data))
    return store.append(header, BodySource(len(data), data=data)).uid


def _mid(store: MailStore) -> int:
    return store.status("alice", "INBOX").mailbox_id


def _store(tmp_path: pathlib.Path, *, fulltext: bool = False) -> MailStore:
    store = MailStore(StoreOptions(data_dir=tmp_path / "s", fulltext=fulltext))
    store.fence(1)
    store.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="pw"))
    return store


def _index_answers(store: MailStore, needles: tuple[str, ...] = NEEDLES) -> list[list[int]]:
    queries = [ipb.TextQuery(needle=n.casefold(), body_only=b) for n in needles for b in (False, True)]
    req = ipb.IndexScanRequest(user="alice", mailbox_id=_mid(store), uid_set="1:*", text_queries=queries)
    first = next(iter(store.scan_index(req)))
    return [list(array.array("I", hits.uids)) for hits in first.text_hits]


def _scan_answers(present: dict[int, bytes], needles: tuple[str, ...] = NEEDLES) -> list[list[int]]:
    out = []
    context = SearchContext(len(present), max(present), frozenset())
    for needle in needles:
        for body_only in (False, True):
            key = S.BodyKey(needle) if body_only else S.TextKey(needle)
            evaluator = SearchEvaluator(key, context)
            out.append(
                [
                    uid
                    for seq, (uid, data) in enumerate(sorted(present.items()), start=1)
                    if evaluator.matches(MessageView(uid, 0, (), 0, 0, len(data), chunks=(data,)), seq)
                ]
            )
    return out


def test_fulltext_answers_equal_the_scan_unindexed_partly_indexed_and_after_expunge(tmp_path: pathlib.Path) -> None:
    store = _store(tmp_path)
    try:
        corpus = _corpus()
        present: dict[int, bytes] = {}
        half = len(corpus) // 2
        for data in corpus[:half]:
            present[_append(store, data)] = data
        assert _index_answers(store) == _scan_answers(present)  # nothing indexed: all scanned
        assert store.fulltext.catch_up(store.env, store.dbs) == half
        for data in corpus[half:]:
            present[_append(store, data)] = data
        expected = _scan_answers(present)
        assert _index_answers(store) == expected  # indexed head, scanned tail
        assert store.fulltext.catch_up(store.env, store.dbs) == len(corpus) - half
        assert _index_answers(store) == expected  # all indexed
        assert sum(1 for hits in expected if hits) > 20  # most needles find something
        mid = _mid(store)
        doomed = sorted(present)[::3]
        store.store_flags(
            store_pb2.StoreFlagsRequest(
                epoch=1,
                user="alice",
                mailbox_id=mid,
                uid_set=",".join(map(str, doomed)),
                mode=store_pb2.FLAG_MODE_ADD,
                flags=["\\Deleted"],
            )
        )
        store.expunge(store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=mid))
        for uid in doomed:
            del present[uid]
        assert _index_answers(store) == _scan_answers(present)  # stale rows of expunged messages do not show
    finally:
        store.close()


def test_the_indexer_catches_up_after_appends(tmp_path: pathlib.Path) -> None:
    store = _store(tmp_path, fulltext=True)
    try:
        uids = [_append(store, data) for data in _generated()]
        deadline = time.monotonic() + 20
        while store.fulltext.watermarks().get(_mid(store), 0) < uids[-1]:
            assert time.monotonic() < deadline, "the indexer did not catch up"
            time.sleep(0.05)
        hits, mark = store.fulltext.search(_mid(store), "quillwort", body_only=True)
        assert mark == uids[-1] and hits == {uids[0]}  # not the base64 image/png of uids[3]
    finally:
        store.close()


def test_the_indexer_waits_for_a_pause_but_not_longer_than_its_bound(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Woken by every commit, it indexes once the appends pause; appends that never pause
    are still indexed, every INDEX_DELAY or so, while they go on. (The loop the indexer
    process runs, run here in a thread so that the patched pause applies.)"""
    monkeypatch.setattr(fulltext, "INDEX_QUIET", 30.0)  # no pause is ever long enough: only the bound counts
    store = _store(tmp_path)
    stop, stop_indexer = threading.Event(), threading.Event()
    wakes = fulltext.Wakes()
    corpus = _generated()

    def appender() -> None:
        n = 0
        while not stop.is_set():
            _append(store, corpus[n % len(corpus)])
            wakes.add([_mid(store)])
            n += 1

    thread = threading.Thread(target=appender)
    indexer = threading.Thread(target=store.fulltext.run, args=(store.env, store.dbs, wakes, stop_indexer))
    try:
        started = time.monotonic()
        thread.start()
        indexer.start()
        while not store.fulltext.watermarks().get(_mid(store), 0):
            assert time.monotonic() - started < 10 * fulltext.INDEX_DELAY, "appends without a pause starve the indexer"
            time.sleep(0.02)
        assert thread.is_alive()  # indexed while the appends went on
    finally:
        stop.set()
        stop_indexer.set()
        thread.join(30)
        indexer.join(30)
        store.close()


def test_wakes_name_mailboxes_and_a_sweep_names_every_one() -> None:
    wakes = fulltext.Wakes()
    assert wakes.take() == set() and not wakes.event.is_set()
    wakes.add([3, 1])
    wakes.add([3])
    assert wakes.event.is_set() and wakes.take() == {1, 3} and wakes.take() == set()
    wakes.add([2])
    wakes.sweep()
    assert wakes.take() is None  # every mailbox (2 among them)
    assert wakes.take() == set()


def test_the_store_names_the_mailboxes_to_the_indexer_process_and_asks_a_sweep_after_a_lost_wake(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The wake-up pipe's protocol end to end, with the child's reading loop in a thread:
    ids arrive whole (writes of at most PIPE_BUF bytes), a wake-up refused by a full pipe
    is followed by a sweep request, end of file stops the child."""

    read_fd, write_fd = os.pipe()
    handle = fulltext_worker.IndexerProcess(0, write_fd)
    wakes, stop = _RecordingWakes(), threading.Event()
    many = list(range(1, 2000))  # more ids than one atomic write holds
    handle.wake(many)
    handle.wake([7, 7, 5])
    monkeypatch.setattr(os, "write", _refuse_write)
    handle.wake([9])  # lost: the pipe is "full"
    monkeypatch.undo()
    handle.wake([11])
    os.close(write_fd)
    fulltext_worker._watch_pipe(read_fd, wakes, stop)  # returns at end of file
    os.close(read_fd)
    assert stop.is_set()
    assert wakes.added == [*many, 5, 7, 11]  # whole ids, in order, each wake-up's once; 9 was lost
    assert wakes.sweeps == 1  # asked with the wake-up after the lost one
    assert wakes.take() is None


class _RecordingWakes(fulltext.Wakes):
    def __init__(self) -> None:
        super().__init__()
        self.added: list[int] = []
        self.sweeps = 0

    def add(self, mailbox_ids: Iterable[int]) -> None:
        ids = list(mailbox_ids)
        self.added.extend(ids)
        super().add(ids)

    def sweep(self) -> None:
        self.sweeps += 1
        super().sweep()


def _refuse_write(fd: int, data: bytes) -> int:
    raise BlockingIOError


@pytest.mark.parametrize("slice_chars", [1, 3, 7, 64 * 1024])
def test_words_cut_a_slice_at_a_time_are_the_whole_text_s_words(
    slice_chars: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fulltext._words (slices ending at a separator, ASCII by bytes.translate) = one findall of _WORD."""
    monkeypatch.setattr(fulltext, "WORDS_SLICE", slice_chars)
    rng = random.Random(slice_chars)
    alphabet = "abcxyz019 .,;-_\t\r\n@/ABZ\x7f\x00éß€\u00a0\u3000🙂"
    texts = ["", " ", "word", "a" * 50, " lead", "trail ", "é", "x é y"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120))) for _ in range(500)]
    for text in texts:
        assert fulltext._words(text) == set(fulltext._WORD.findall(text)), repr(text)


def test_a_pass_over_named_mailboxes_indexes_only_those_and_batches_them_in_one_go(tmp_path: pathlib.Path) -> None:
    """The indexer thread visits only the mailboxes that received messages (a pass over every
    mailbox after each append cost more than the indexing); a sweep (None) visits them all."""
    store = _store(tmp_path)
    try:
        store.create_mailbox(store_pb2.CreateMailboxRequest(epoch=1, user="alice", name="Other"))
        other = store.status("alice", "Other").mailbox_id
        inbox = [_append(store, data) for data in _generated()]
        header = store_pb2.AppendHeader(epoch=1, user="alice", mailbox="Other", size=len(_generated()[0]))
        store.append(header, BodySource(len(_generated()[0]), data=_generated()[0]))
        assert store.fulltext.catch_up(store.env, store.dbs, mailbox_ids=[other]) == 1
        assert store.fulltext.watermarks() == {other: 1}
        assert store.fulltext.catch_up(store.env, store.dbs, mailbox_ids=[]) == 0
        assert store.fulltext.catch_up(store.env, store.dbs, mailbox_ids=[other, _mid(store)]) == len(inbox)
        assert store.fulltext.watermarks() == {other: 1, _mid(store): inbox[-1]}
        assert store.fulltext.search(_mid(store), "quillwort", body_only=True) == ({inbox[0]}, inbox[-1])
        assert store.fulltext.search(other, "quillwort", body_only=True) == ({1}, 1)
        assert store.fulltext.catch_up(store.env, store.dbs) == 0  # a sweep: nothing left anywhere
    finally:
        store.close()


def test_rebuild_command_indexes_everything_again_and_refuses_a_running_store(tmp_path: pathlib.Path) -> None:
    store = _store(tmp_path)
    argv = [sys.executable, "-m", "mailha.cli", "store", "fulltext-rebuild", "--data", str(tmp_path / "s")]
    try:
        for data in _generated():
            _append(store, data)
        refused = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode == 1 and "stop it first" in refused.stderr
    finally:
        store.close()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "indexed 4 messages" in done.stdout, done.stderr
    store = MailStore(StoreOptions(data_dir=tmp_path / "s", fulltext=False))
    try:
        assert store.fulltext.watermarks() == {_mid(store): 4}
    finally:
        store.close()


def _indexed_any(path: pathlib.Path) -> bool:
    if not path.exists():
        return False
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        try:
            return bool(conn.execute("SELECT max(uid) FROM watermarks").fetchone()[0])
        except sqlite3.OperationalError:  # not created yet
            return False


def test_after_kill9_while_appending_and_indexing_the_answers_still_equal_the_scan(tmp_path: pathlib.Path) -> None:
    """The store process (indexer on by default) is killed mid-stream; the index and LMDB are then
    whatever each had made durable, and every answer must still be the scan's (tail scanned)."""
    server = StoreServer(tmp_path / "s", tmp_path / "s.sock")
    server.start()
    corpus = _corpus()
    try:
        with server.client() as client:
            epoch = client.epoch()
            client.create_user("alice", "pw", epoch=epoch)
        stop = threading.Event()

        def appender() -> None:  # batches of 100 in one MultiAppend: faster than the indexer follows
            with StoreClient(server.address, timeout=10) as client:
                n = 0
                while not stop.is_set():
                    batch = []
                    for data in (corpus[(n + i) % len(corpus)] for i in range(100)):
                        header = store_pb2.AppendHeader(epoch=epoch, user="alice", mailbox="INBOX", size=len(data))
                        batch.append(store_pb2.AppendRequest(header=header, data=data, last=True))
                    try:
                        client.stub.MultiAppend(iter(batch))
                    except grpc.RpcError:
                        return
                    n += 100

        threads = [threading.Thread(target=appender) for _ in range(2)]  # two: one batch commits while one is sent
        for t in threads:
            t.start()
        # Kill while it appends and indexes: once the indexer (which waits for a pause in the
        # appends, at most fulltext.INDEX_DELAY) has committed something, a little later.
        deadline = time.monotonic() + 20
        while not _indexed_any(tmp_path / "s" / "fulltext.sqlite"):
            assert time.monotonic() < deadline, "the indexer did not start"
            time.sleep(0.05)
        time.sleep(0.3)
        server.kill9()
        stop.set()
        for t in threads:
            t.join(15)
    finally:
        server.stop()
    store = MailStore(StoreOptions(data_dir=tmp_path / "s", fulltext=False))
    try:
        mid = _mid(store)
        with store.env.begin() as txn:
            present = {
                uid: fulltext.message_bytes(txn, store.dbs, rec)
                for uid, rec in fulltext.messages_above(txn, store.dbs, mid, 0, 1_000_000)
            }
        mark = store.fulltext.watermarks().get(mid, 0)
        assert len(present) > 40 and mark > 0, (len(present), mark)  # enough written, some of it indexed
        needles = ("quillwort", "illwor", "müller", "wort grows", "the", "e")  # exact, checked, scanned
        expected = _scan_answers(present, needles)
        assert _index_answers(store, needles) == expected and sum(1 for hits in expected if hits) >= 9
        store.fulltext.catch_up(store.env, store.dbs)
        assert _index_answers(store, needles) == expected
    finally:
        store.close()


def test_optimize_after_a_fill_shrinks_the_index_and_keeps_its_answers(tmp_path: pathlib.Path) -> None:
    index = fulltext.FullTextIndex(tmp_path / "fulltext.sqlite")
    try:
        for start in range(1, 2001, 100):  # many small transactions, as the indexer writes
            items = []
            for uid in range(start, start + 100):
                head = f"Subject: report {uid}\r\nFrom: a{uid % 7}@example.org\r\n\r\n"
                text = head + f"quarterly words {uid} lunch{uid % 13}\r\n"
                items.append((uid, fulltext.texts(text.encode())))
            index.add(1, items, start + 99)
        needles = [("report", False), ("lunch3", True), ("quarterly", True), ("a4@example", False)]
        before = [index.search(1, n, body_only) for n, body_only in needles]
        size_before = sum(p.stat().st_size for p in tmp_path.iterdir())
        index.optimize()
        size_after = sum(p.stat().st_size for p in tmp_path.iterdir())
        assert [index.search(1, n, body_only) for n, body_only in needles] == before
        assert before[1][0] is not None and len(before[1][0]) > 100  # the answers compared are not empty
        assert size_after < size_before * 0.9, (size_before, size_after)
    finally:
        index.close()


def _children(pid: int) -> list[int]:
    path = pathlib.Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _nice(pid: int) -> int:
    return int(pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_the_indexer_is_a_lower_priority_child_that_ends_with_its_store(tmp_path: pathlib.Path) -> None:
    """The indexer runs beside the store's GIL (store/fulltext_worker.py), indexes what is
    delivered, and does not outlive a store killed with -9 (its wake-up pipe ends)."""
    server = StoreServer(tmp_path / "s", tmp_path / "s.sock")
    server.start()
    try:
        assert server.process is not None
        (indexer,) = _children(server.process.pid)
        assert _nice(indexer) > _nice(server.process.pid)
        with server.client() as client:
            epoch = client.epoch()
            client.create_user("alice", "pw", epoch=epoch)
            for data in _generated():
                header = store_pb2.AppendHeader(epoch=epoch, user="alice", mailbox="INBOX", size=len(data))
                client.stub.MultiAppend(iter([store_pb2.AppendRequest(header=header, data=data, last=True)]))
        index = fulltext.FullTextIndex(tmp_path / "s" / "fulltext.sqlite")
        try:
            deadline = time.monotonic() + 20
            while sum(index.watermarks().values()) < len(_generated()):
                assert time.monotonic() < deadline, "the indexer process did not index the appends"
                time.sleep(0.05)
        finally:
            index.close()
        server.kill9()
        deadline = time.monotonic() + 10
        while pathlib.Path(f"/proc/{indexer}").exists() and _state(indexer) != "Z":
            assert time.monotonic() < deadline, "the indexer outlived its store"
            time.sleep(0.05)
    finally:
        server.stop()


def _state(pid: int) -> str:
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


_READY_PROBE = """
import os, pathlib, sys, time
import lmdb
from store.layout import lmdb_dir
from store.environment import open_dbs
from store.fulltext import FullTextIndex
from store.fulltext_worker import IndexerProcess
from store.schema import MAX_DBS

data = pathlib.Path(sys.argv[1])
indexer = IndexerProcess.start(data)

def opened() -> set[str]:
    names = set()
    for fd in pathlib.Path(f"/proc/{indexer.pid}/fd").iterdir():
        try:
            names.add(pathlib.Path(os.readlink(fd)).name)
        except OSError:
            pass
    return names & {"data.mdb", "fulltext.sqlite"}

env = lmdb.open(str(lmdb_dir(data)), max_dbs=MAX_DBS, subdir=True)
open_dbs(env)  # what a store has done when its indexer used to open everything at once
time.sleep(1.0)
before = opened()
index = FullTextIndex(data / "fulltext.sqlite")
indexer.ready()
deadline = time.monotonic() + 20
while opened() != {"data.mdb", "fulltext.sqlite"} and time.monotonic() < deadline:
    time.sleep(0.02)
after = opened()
indexer.close()
index.close()
env.close()
print(sorted(before), sorted(after))
"""


def test_the_indexer_child_opens_nothing_before_its_store_says_ready(tmp_path: pathlib.Path) -> None:
    """Store and indexer switching a new fulltext.sqlite to WAL at the same moment got
    "database is locked" without waiting (a store failed to start in CI): the child opens
    LMDB and SQLite only after the store's `ready`, even when the environment exists."""
    data = tmp_path / "data"
    data.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", _READY_PROBE, str(data)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "[] ['data.mdb', 'fulltext.sqlite']"
