"""One reading of a header block gives what the two separate readings gave: the indexed search
text (`search_fields.indexed_text`) and the stored sort keys (`sort_keys.stored_keys`), byte for
byte, over the bench corpus, hand-made edge cases and generated blocks; and the store keeps the
same header text and facts as those functions give."""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import given, settings

from bench.mailbox_corpus import message
from mailha_api import store_pb2
from mailparse.head_facts import index_and_keys
from mailparse.search_fields import indexed_text
from mailparse.sort_keys import stored_keys
from store import bodies, header_index, message_facts
from store.engine import MailStore, StoreOptions
from store.schema import MSG_KEY, MessageRecord
from tests.header_blocks import header_blocks


def _separately(block: bytes) -> tuple[bytes, bytes]:
    return indexed_text(block), stored_keys(block)


def _block(data: bytes) -> bytes:
    return bodies.header_block(data[: bodies.HEADER_SEARCH_LIMIT])


def test_the_bench_corpus_reads_the_same() -> None:
    for n in range(600):
        block = _block(b"Return-Path: <b@x.test>\r\nDelivered-To: alice@x.test\r\n" + message(n, seed=3))
        assert index_and_keys(block) == _separately(block), n


_RECEIVED = (
    b"Received: from mx%d.example.org (mx%d.example.org [192.0.2.%d])\r\n\tby mail.example.net; Tue, 14 Nov 2023\r\n"
)

EDGE_CASES = {
    "empty": b"",
    "no fields, only a body": b"hello there\r\nsecond line\r\n",
    "blank first": b"\r\nFrom: a@b.c\r\n\r\n",
    "missing headers": b"X-Other: 1\r\n\r\nbody",
    "folded": b"Subject: a long\r\n subject\r\n\tfolded twice\r\nFrom: A\r\n <a@b.c>\r\nTo: x@y.z,\r\n w@v.u\r\n\r\n",
    "encoded words": (
        b"Subject: =?UTF-8?B?w6TDtsO8?= =?ISO-8859-1?Q?caf=E9?= Re: [list] Fwd: x (fwd)\r\n"
        b'From: =?UTF-8?Q?J=C3=BCrgen?= <j@example.org>\r\nTo: "Doe, J." <jd@example.net>\r\n\r\n'
    ),
    "8-bit junk": (
        b"Subject: caf\xe9 \xff\xfe\x00nul\r\nFrom: \xc3\xa9l\xe8ve <e\xe8@x.y>\r\n"
        b"\xff\xfe junk line without colon\r\nTo: after-junk@example.org\r\nDate: garbage \xff\r\n\r\n"
    ),
    "junk line ends the indexed part, not the sort keys' part": (
        b"From: first@example.org\r\nthis line is not a field\r\nSubject: after\r\nCc: c@d.e\r\n\r\nbody"
    ),
    "continuation first": b" continued\r\nFrom: a@b.c\r\nSubject: s\r\n\r\n",
    "LF only": b"From: a@b.c\nSubject: lf\nTo: t@u.v\n\nbody\n",
    "LF blank before a CRLF blank": b"From: a@b.c\n\nSubject: later\r\nTo: t@u.v\r\n\r\nbody",
    "no blank line": b"From: a@b.c\r\nSubject: no end",
    "lone CR line": b"From: a@b.c\r\n\r\r\nSubject: s\r\n\r\n",
    "blank line of spaces": b"From: a@b.c\r\n \r\nSubject: s\r\n\r\n",
    "duplicates and case": (
        b"SUBJECT: one\r\nsubject: two\r\nFROM : x@y.z\r\nfrom: second@y.z\r\nTO:\r\nBcc: hidden@x.y\r\n"
        b"bcc: (comment) <h2 (c)@ (c) x.y>\r\nMessage-ID: <a@b> <c@d>\r\nmessage-id: <e@f>\r\n\r\n"
    ),
    "groups and comments": (
        b'To: undisclosed-recipients:;\r\nCc: team: a@b.c, "B" <b@c.d>;, (only a comment)\r\n'
        b"From: (Name in comment) bare@example.org\r\nReferences: <1@x> <2@x>\r\n\t<3@x>\r\n"
        b"In-Reply-To: <3@x> <4@x>\r\n\r\n"
    ),
    "separators inside values": b'Subject: a\x1fb\x00c\r\nFrom: "\x1f" <s@x.y>\r\n\r\n',
    "name longer than a field name may be": b"X" * 300 + b": v\r\nSubject: s\r\n\r\n",
    "many Received lines": b"".join(_RECEIVED % (i, i, i % 250) for i in range(2000))
    + b"From: a@b.c\r\nSubject: late\r\n\r\n",
    "huge From": b"From: " + b", ".join(b"user%d@example.org" % i for i in range(5000)) + b"\r\nTo: t@u.v\r\n\r\n",
    "huge Subject": b"Subject: " + b"Re: " * 3000 + b"x" * 9000 + b"\r\n\r\n",
    "long References": b"References: " + b" ".join(b"<%d@example.org>" % i for i in range(1000)) + b"\r\n\r\n",
    "header past the 1 MiB head": b"X-Big: " + b"y" * (1024 * 1024 + 10) + b"\r\nSubject: cut\r\n\r\nbody",
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_cases_read_the_same(name: str) -> None:
    block = _block(EDGE_CASES[name])
    assert index_and_keys(block) == _separately(block)


def test_the_junk_line_case_really_differs_between_the_two_readings() -> None:
    # The case the one pass must get right: the indexed text stops at the junk line, the sort
    # keys read past it (otherwise this case would test nothing).
    text, keys = index_and_keys(_block(EDGE_CASES["junk line ends the indexed part, not the sort keys' part"]))
    assert b"after" not in text
    assert b"AFTER" in keys


_BLOCKS = header_blocks(
    [b"Subject", b"FROM", b"to", b"Cc", b"bcc", b"Date", b"Message-ID", b"References", b"In-Reply-To", b"X-A", b"A:B"],
    value_chars=' \tabcXYZ<>@.,;:()"=?[]\r\n\x00\x1f\xe9',
    value_size=16,
    max_fields=6,
    colons=(b":", b" :", b"\t:", b""),
    folds=(b" ", b"\t", b"", b"\r\n"),
    tails=(b"", b"\r\n", b"\n", b"\r\n\r\nbody", b"\n\nbody"),
)


@settings(max_examples=3000, deadline=None)
@given(_BLOCKS)
def test_generated_blocks_read_the_same(raw: bytes) -> None:
    block = _block(raw)
    assert index_and_keys(block) == _separately(block)
    assert index_and_keys(raw) == _separately(raw)  # also a block that bodies.header_block did not cut


def test_the_store_keeps_what_the_separate_functions_give(tmp_path: pathlib.Path) -> None:
    store = MailStore(StoreOptions(data_dir=tmp_path / "s", fulltext=False))
    try:
        store.fence(1)
        store.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="pw"))
        sent = [message(n, seed=5) for n in range(40)] + [_block(v) + b"body\r\n" for v in EDGE_CASES.values() if v]
        for data in sent:
            header = store_pb2.AppendHeader(epoch=1, user="alice", mailbox="INBOX", size=len(data))
            store.append(header, bodies.BodySource(len(data), data=data))
        with store.env.begin() as txn:
            cur = txn.cursor(db=store.dbs.messages)
            assert cur.first()
            stored = [(*MSG_KEY.unpack(bytes(k)), MessageRecord.unpack(v)) for k, v in cur]
            assert len(stored) == len(sent)
            for (mid, uid, rec), data in zip(stored, sent, strict=True):
                head = data[: bodies.HEADER_SEARCH_LIMIT]
                block = bodies.header_block(head)
                assert bodies.read_header(txn, store.dbs, rec.body_id) == block
                assert header_index.text_of(txn, store.dbs.header_index, mid, uid) == indexed_text(block)
                assert message_facts.of_body(txn, store.dbs, rec.body_id) == message_facts.compute(block, head)
    finally:
        store.close()
