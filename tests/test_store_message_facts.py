"""The SORT/THREAD keys the store computes once at append (store/message_facts.py).

They are kept per body: COPY shares them, the last reference's EXPUNGE (or the
mailbox's DELETE) removes them, and the MailboxIndex scan hands them to imapd in
the form `SortKeys.from_stored` reads, equal to what parsing the header gives.
"""

from __future__ import annotations

import array
import calendar
import pathlib
import time
import unicodedata

import pytest

from mailha_api import mailbox_index_pb2 as ipb
from mailha_api import store_pb2
from mailparse.sort_keys import SortKeys, stored_keys
from store.bodies import BodySource, header_block
from store.engine import MailStore, StoreOptions
from store.schema import U64


def _message(n: int) -> bytes:
    refs = f"References: <{n - 1}@example.org>\r\n" if n % 2 else ""
    return (
        f'From: "Us=?UTF-8?B?w6k=?=r {n}" <u{n}@example.org>\r\nTo: team@example.org\r\nCc: c{n}@example.org\r\n'
        f"Subject: Re: [list] topic {n % 3}\r\nDate: 0{1 + n % 9} Nov 2026 10:00:00 +0100\r\n"
        f"Message-ID: <{n}@example.org>\r\n{refs}\r\nbody {n}\r\n"
    ).encode()


def _append(store: MailStore, data: bytes, mailbox: str = "INBOX") -> int:
    header = store_pb2.AppendHeader(epoch=1, user="alice", mailbox=mailbox, size=len(data), internal_date=1_700_000_000)
    return store.append(header, BodySource(len(data), data=data)).uid


def _mid(store: MailStore, name: str) -> int:
    return store.status("alice", name).mailbox_id


def _scan(store: MailStore, name: str) -> tuple[list[int], list[bytes], list[int]]:
    req = ipb.IndexScanRequest(
        user="alice", mailbox_id=_mid(store, name), uid_set="1:*", with_sizes_dates=True, with_sort_keys=True
    )
    uids: list[int] = []
    keys: list[bytes] = []
    sizes: list[int] = []
    for chunk in store.scan_index(req):
        uids += array.array("I", chunk.uids)
        sizes += array.array("Q", chunk.sizes)
        keys += chunk.sort_keys
    return uids, keys, sizes


def _facts_count(store: MailStore) -> int:
    with store.env.begin() as txn:
        return int(txn.stat(store.dbs.message_facts)["entries"])


def _open(tmp_path: pathlib.Path) -> MailStore:
    store = MailStore(StoreOptions(data_dir=tmp_path / "s"))
    store.fence(1)
    store.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="pw"))
    return store


def test_scan_gives_the_keys_parsing_the_header_gives(tmp_path: pathlib.Path) -> None:
    store = _open(tmp_path)
    try:
        mail = [_message(n) for n in range(1, 21)]
        for data in mail:
            _append(store, data)
        uids, keys, sizes = _scan(store, "INBOX")
        assert uids == list(range(1, 21))
        for data, raw, size in zip(mail, keys, sizes, strict=True):
            header = header_block(data)
            assert raw == stored_keys(header)
            stored = SortKeys.from_stored(raw, internal_date=1_700_000_000, size=size)
            assert stored == SortKeys.from_header(header, internal_date=1_700_000_000, size=len(data))
        first = SortKeys.from_stored(keys[0], internal_date=0, size=0)
        assert first is not None
        assert (first.subject, first.subject_reply, first.display_from, first.cc) == (
            "TOPIC 1",
            True,
            unicodedata.normalize("NFKD", "USÉR 1"),  # i;unicode-casemap: titlecase, then NFKD
            "C1",
        )
        assert first.sent == calendar.timegm((2026, 11, 2, 9, 0, 0))  # 02 Nov 2026 10:00 +0100
        assert first.message_id == b"<1@example.org>" and first.parent_ids == (b"<0@example.org>",)
    finally:
        store.close()


def test_a_missing_or_unreadable_date_leaves_the_internal_date() -> None:
    raw = stored_keys(b"Subject: x\r\nDate: not a date\r\n\r\n")
    keys = SortKeys.from_stored(raw, internal_date=1234, size=5)
    assert keys is not None and keys.sent == 1234 and keys.message_id is None and keys.parent_ids == ()
    assert SortKeys.from_stored(b"\x09" + raw[1:], internal_date=0, size=0) is None  # another version
    assert SortKeys.from_stored(raw[:5], internal_date=0, size=0) is None


def test_a_nul_in_a_header_value_does_not_break_the_stored_form() -> None:
    header = b"Subject: =?UTF-8?Q?a=00b?=\r\nMessage-ID: <x\x00y@z>\r\nFrom: =?UTF-8?Q?N=00?= <n@z>\r\n\r\n"
    keys = SortKeys.from_header(header, internal_date=1, size=1)
    assert keys.subject == "AB" and "\0" not in keys.display_from


def test_copy_shares_the_keys_and_the_last_expunge_removes_them(tmp_path: pathlib.Path) -> None:
    store = _open(tmp_path)
    try:
        for n in range(1, 11):
            _append(store, _message(n))
        assert _facts_count(store) == 10
        store.create_mailbox(store_pb2.CreateMailboxRequest(epoch=1, user="alice", name="Kept"))
        inbox = _mid(store, "INBOX")
        store.copy(
            store_pb2.CopyRequest(epoch=1, user="alice", mailbox_id=inbox, uid_set="1:6", dest_mailbox="Kept"),
            move=False,
        )
        assert _facts_count(store) == 10  # the copies share the bodies and their keys
        assert _scan(store, "Kept")[1] == _scan(store, "INBOX")[1][:6]
        store.store_flags(
            store_pb2.StoreFlagsRequest(
                epoch=1,
                user="alice",
                mailbox_id=inbox,
                uid_set="1:*",
                mode=store_pb2.FLAG_MODE_ADD,
                flags=["\\Deleted"],
            )
        )
        store.expunge(store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=inbox))
        assert _facts_count(store) == 6  # bodies 7-10 had no other reference
        store.delete_mailbox(store_pb2.DeleteMailboxRequest(epoch=1, user="alice", name="Kept"))
        assert _facts_count(store) == 0
    finally:
        store.close()


def test_a_body_stored_without_keys_scans_as_empty(tmp_path: pathlib.Path) -> None:
    """As in an environment written before the keys were kept: imapd then parses the header."""
    store = _open(tmp_path)
    try:
        _append(store, _message(1))
        _append(store, _message(2))
        with store.env.begin(write=True) as txn:
            assert txn.delete(U64.pack(1), db=store.dbs.message_facts)
        keys = _scan(store, "INBOX")[1]
        assert keys[0] == b"" and keys[1] == stored_keys(header_block(_message(2)))
    finally:
        store.close()


def _fetch_facts(store: MailStore, name: str) -> dict[int, store_pb2.MessageMeta]:
    req = store_pb2.FetchRequest(user="alice", mailbox_id=_mid(store, name), uid_set="1:*", with_message_facts=True)
    streamed = {r.meta.uid: r.meta for r in store.fetch(req) if r.WhichOneof("item") == "meta"}
    batch = {m.uid: m for m in store.fetch_batch(req).metas}
    assert streamed == batch  # the one-reply path gives the same facts
    return streamed


def _save_dates_count(store: MailStore) -> int:
    with store.env.begin() as txn:
        return int(txn.stat(store.dbs.save_dates)["entries"])


def test_save_dates_follow_every_write_path(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_800_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    store = _open(tmp_path)
    try:
        for n in range(1, 6):
            _append(store, _message(n))
        facts = _fetch_facts(store, "INBOX")
        assert {m.save_date for m in facts.values()} == {1_800_000_000}  # not the internal date
        assert all(m.has_preview and m.preview == f"body {m.uid}" for m in facts.values())
        clock[0] += 3600
        store.create_mailbox(store_pb2.CreateMailboxRequest(epoch=1, user="alice", name="Kept"))
        inbox = _mid(store, "INBOX")
        store.copy(
            store_pb2.CopyRequest(epoch=1, user="alice", mailbox_id=inbox, uid_set="1:2", dest_mailbox="Kept"),
            move=False,
        )
        store.copy(
            store_pb2.CopyRequest(epoch=1, user="alice", mailbox_id=inbox, uid_set="3", dest_mailbox="Kept"), move=True
        )
        kept = _fetch_facts(store, "Kept")
        assert {m.save_date for m in kept.values()} == {1_800_003_600}  # COPY and MOVE save anew
        # The EMAILID (body id) is the same for a copy and its original, and after a MOVE.
        assert [m.body_id for m in kept.values()] == [facts[1].body_id, facts[2].body_id, facts[3].body_id]
        assert _save_dates_count(store) == 7
        clock[0] += 3600
        store.rename_mailbox(store_pb2.RenameMailboxRequest(epoch=1, user="alice", old_name="INBOX", new_name="Old"))
        old = _fetch_facts(store, "Old")
        assert {m.save_date for m in old.values()} == {1_800_000_000}  # carried over with the messages
        assert _fetch_facts(store, "INBOX") == {}
        assert _save_dates_count(store) == 7
        old_id = _mid(store, "Old")
        store.store_flags(
            store_pb2.StoreFlagsRequest(
                epoch=1, user="alice", mailbox_id=old_id, uid_set="1", mode=store_pb2.FLAG_MODE_ADD, flags=["\\Deleted"]
            )
        )
        store.expunge(store_pb2.ExpungeRequest(epoch=1, user="alice", mailbox_id=old_id))
        assert _save_dates_count(store) == 6
        store.delete_mailbox(store_pb2.DeleteMailboxRequest(epoch=1, user="alice", name="Kept"))
        assert _save_dates_count(store) == 3
    finally:
        store.close()


def test_a_save_date_equal_to_the_internal_date_is_not_written_and_reads_the_same(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A delivery (or an APPEND without a date) is saved at its internal date: the store writes no
    # save_dates entry for it (fewer pages per commit) and answers the same date from the record.
    clock = [1_800_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    store = _open(tmp_path)
    try:
        data = _message(1)
        store.append(
            store_pb2.AppendHeader(epoch=1, user="alice", mailbox="INBOX", size=len(data)),
            BodySource(len(data), data=data),
        )
        store.append(  # dated now explicitly: the same
            store_pb2.AppendHeader(epoch=1, user="alice", mailbox="INBOX", size=len(data), internal_date=1_800_000_000),
            BodySource(len(data), data=data),
        )
        _append(store, _message(3))  # dated in the past: its save date is kept
        assert _save_dates_count(store) == 1
        facts = _fetch_facts(store, "INBOX")
        now, past = 1_800_000_000, 1_700_000_000
        assert {uid: m.save_date for uid, m in facts.items()} == {1: now, 2: now, 3: now}
        assert {uid: m.internal_date for uid, m in facts.items()} == {1: now, 2: now, 3: past}
        store.create_mailbox(store_pb2.CreateMailboxRequest(epoch=1, user="alice", name="Kept"))
        inbox = _mid(store, "INBOX")
        store.copy(  # in the same second: saved at the internal date again, nothing written
            store_pb2.CopyRequest(epoch=1, user="alice", mailbox_id=inbox, uid_set="1", dest_mailbox="Kept"),
            move=False,
        )
        assert _save_dates_count(store) == 1
        clock[0] += 60
        store.copy(  # a minute later: written
            store_pb2.CopyRequest(epoch=1, user="alice", mailbox_id=inbox, uid_set="2", dest_mailbox="Kept"),
            move=True,
        )
        assert _save_dates_count(store) == 2
        assert {uid: m.save_date for uid, m in _fetch_facts(store, "Kept").items()} == {
            1: 1_800_000_000,
            2: 1_800_000_060,
        }
    finally:
        store.close()


def test_a_message_without_a_save_date_gives_its_internal_date(tmp_path: pathlib.Path) -> None:
    store = _open(tmp_path)
    try:
        _append(store, _message(1))
        with store.env.begin(write=True) as txn:
            txn.drop(store.dbs.save_dates, delete=False)
            txn.drop(store.dbs.message_facts, delete=False)
        (meta,) = _fetch_facts(store, "INBOX").values()
        assert meta.save_date == 1_700_000_000 and not meta.has_preview and meta.body_id
    finally:
        store.close()
