"""SORT keys, base subjects and THREAD algorithms: RFC examples, and the same corpus beside Dovecot.

The differential half appends one generated corpus (replies, truncated and
looping References, duplicate Message-IDs, list tags, encoded words, broken
dates, display names) into a throwaway Dovecot and compares its SORT and
THREAD answers with what `sort_keys`/`threads` compute from the same bytes.
"""

from __future__ import annotations

import imaplib
import random
import re
import time
from collections.abc import Iterator

import pytest

from bench import dovecot
from imapd.message.threads import ThreadAlgorithm, thread_list
from mailparse.collation import base_subject, casemap_key
from mailparse.sort_keys import SortCriterion, SortKeys, sort_numbers


@pytest.mark.parametrize(
    ("subject", "base", "reply"),
    [
        (b"Hello", "Hello", False),
        (b"Re: Hello", "Hello", True),
        (b"RE: re: Fwd: Hello", "Hello", True),
        (b"Re[2]: Hello", "Hello", True),
        (b"[list] Re: Hello", "Hello", True),
        (b"[list] Hello", "Hello", False),
        (b"[only a blob]", "[only a blob]", False),
        (b"Hello (fwd)", "Hello", True),
        (b"[Fwd: Re: Hello]", "Hello", True),
        (b"  Re:   Hello   world  ", "Hello world", True),
        (b"=?utf-8?q?Re=3A_Gr=C3=BC=C3=9Fe?=", "Grüße", True),
        (b"Review: plans", "Review: plans", False),
        (b"", "", False),
    ],
)
def test_base_subject_follows_rfc5256(subject: bytes, base: str, reply: bool) -> None:
    assert base_subject(subject) == (base, reply)


def test_base_subject_of_hostile_subjects_is_quick_and_bounded() -> None:
    # Each step removes something and only the first 4 KiB are read: linear work, bounded text.
    assert base_subject(b"Re: " * 5000 + b"x") == ("", True)  # the "x" lies beyond the cap
    assert base_subject(b"[" * 100_000) == ("[" * 4096, False)
    assert base_subject(b"x" + b" (fwd)" * 600) == ("x", True)
    assert base_subject(b"[a] " * 1000 + b"x") == ("x", False)


def test_casemap_key_folds_case_and_compatibility_forms() -> None:
    assert casemap_key("abc") == casemap_key("ABC")
    assert casemap_key("\uff41\uff42\uff43") == casemap_key("ABC")  # full-width forms decompose under NFKD
    assert casemap_key("é") == casemap_key("É")


def _keys(header: bytes, *, arrival: int = 1_000_000, size: int = 100) -> SortKeys:
    return SortKeys.from_header(header + b"\r\n", internal_date=arrival, size=size)


def test_sort_reverse_keeps_ties_in_mailbox_order() -> None:
    entries = [
        (1, _keys(b"Subject: b\r\nFrom: x@a.example\r\n")),
        (2, _keys(b"Subject: a\r\nFrom: y@a.example\r\n")),
        (3, _keys(b"Subject: b\r\nFrom: x@a.example\r\n")),
    ]
    assert sort_numbers(entries, [(SortCriterion.SUBJECT, False)]) == [2, 1, 3]
    assert sort_numbers(entries, [(SortCriterion.SUBJECT, True)]) == [1, 3, 2]
    assert sort_numbers(entries, [(SortCriterion.FROM, True), (SortCriterion.SUBJECT, False)]) == [2, 1, 3]


def test_references_thread_of_rfc_shapes() -> None:
    a = _keys(b"Message-ID: <a@x>\r\nSubject: topic\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000")
    b = _keys(b"Message-ID: <b@x>\r\nReferences: <a@x>\r\nSubject: Re: topic\r\nDate: Mon, 1 Jan 2024 11:00:00 +0000")
    c = _keys(b"Message-ID: <c@x>\r\nReferences: <a@x>\r\nSubject: Re: topic\r\nDate: Mon, 1 Jan 2024 12:00:00 +0000")
    d = _keys(b"Message-ID: <d@x>\r\nReferences: <a@x> <c@x>\r\nDate: Mon, 1 Jan 2024 13:00:00 +0000")
    e = _keys(b"Message-ID: <e@x>\r\nReferences: <gone@x>\r\nSubject: other\r\nDate: Mon, 1 Jan 2024 09:00:00 +0000")
    f = _keys(b"Message-ID: <f@x>\r\nReferences: <gone@x>\r\nSubject: other2\r\nDate: Mon, 1 Jan 2024 09:30:00 +0000")
    forest = thread_list(ThreadAlgorithm.REFERENCES, [(1, a), (2, b), (3, c), (4, d), (5, e), (6, f)])
    # e and f share a missing parent: a dummy root; a has two replies, the second one answered.
    assert forest == b"((5)(6))(1 (2)(3 4))"
    flat = thread_list(ThreadAlgorithm.ORDEREDSUBJECT, [(1, a), (2, b), (3, c), (4, d)])
    assert flat == b"(1 (2)(3))(4)"  # threads by their first message's date


def test_references_loops_and_duplicate_ids_do_not_hang_or_lose_messages() -> None:
    a = _keys(b"Message-ID: <a@x>\r\nReferences: <b@x>")
    b = _keys(b"Message-ID: <b@x>\r\nReferences: <a@x>")
    dup = _keys(b"Message-ID: <a@x>\r\nReferences: <a@x>")
    selfref = _keys(b"Message-ID: <s@x>\r\nReferences: <s@x>")
    out = thread_list(ThreadAlgorithm.REFERENCES, [(1, a), (2, b), (3, dup), (4, selfref)])
    assert sorted(int(n) for n in re.findall(rb"\d+", out)) == [1, 2, 3, 4]


# --- the same corpus beside Dovecot -------------------------------------------------------

_WORDS = ["budget", "meeting", "Über", "release", "lunch", "bug 42", "PLAN", "review"]
_PEOPLE = [
    b'"Zoe Adams" <zoe@a.example>',
    b"bob@b.example",
    b"=?utf-8?q?=C3=89mile?= <emile@c.example>",
    b"carol@c.example (Carol C)",
    b"<ann@a.example>",
    b"Dave <dave@d.example>",
]


def _corpus(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    messages: list[bytes] = []
    ids: list[bytes] = []
    for n in range(count):
        msg_id = f"<m{n % (count - 3)}@corpus.example>".encode()  # a few duplicates near the end
        lines = [b"Message-ID: " + msg_id]
        if ids and rng.random() < 0.6:
            start = rng.randrange(len(ids))
            chain = ids[start : start + rng.randint(1, 4)]
            if rng.random() < 0.15:
                chain = [b"<missing" + str(rng.randrange(3)).encode() + b"@corpus.example>", *chain]
            if rng.random() < 0.3:
                lines.append(b"In-Reply-To: " + chain[-1])
            else:
                lines.append(b"References: " + b" ".join(chain))
        word = rng.choice(_WORDS).encode()
        prefix = rng.choice([b"", b"", b"Re: ", b"RE: Re: ", b"Fwd: ", b"[list] ", b"[list] Re: "])
        suffix = rng.choice([b"", b"", b" (fwd)"])
        lines.append(b"Subject: " + prefix + word + suffix)
        day = rng.randint(1, 28)
        if rng.random() < 0.1:
            lines.append(b"Date: not a date")
        elif rng.random() < 0.9:
            lines.append(f"Date: {day} Feb 2024 {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00 +0100".encode())
        lines.append(b"From: " + rng.choice(_PEOPLE))
        lines.append(b"To: " + rng.choice(_PEOPLE))
        if rng.random() < 0.5:
            lines.append(b"Cc: " + rng.choice(_PEOPLE))
        messages.append(b"\r\n".join(lines) + b"\r\n\r\nbody " + str(n).encode() * rng.randint(1, 50) + b"\r\n")
        ids.append(msg_id)
    return messages


@pytest.fixture(scope="module")
def dovecot_corpus() -> Iterator[tuple[imaplib.IMAP4, list[tuple[int, SortKeys]]]]:
    reason = dovecot.available()
    if reason is not None:
        pytest.skip(reason)
    stack = dovecot.DovecotStack().start({"sorter": "sorter-pw"})
    try:
        messages = _corpus(seed=2, count=300)
        client = imaplib.IMAP4("127.0.0.1", stack.imap_port)
        client.login("sorter", "sorter-pw")
        for n, message in enumerate(messages):
            date = imaplib.Time2Internaldate(1_700_000_000 + 3600 * ((n * 37) % 80))
            assert client.append("INBOX", None, date, message)[0] == "OK"
        client.select("INBOX")
        typ, data = client.fetch("1:*", "(INTERNALDATE RFC822.SIZE)")
        assert typ == "OK"
        entries: list[tuple[int, SortKeys]] = []
        for line, message in zip(data, messages, strict=True):
            assert isinstance(line, bytes)
            internal = imaplib.Internaldate2tuple(line)
            assert internal is not None
            size = int(re.search(rb"RFC822\.SIZE (\d+)", line).group(1))  # type: ignore[union-attr]
            header = message[: message.index(b"\r\n\r\n") + 4]
            arrival = int(time.mktime(internal))
            entries.append((len(entries) + 1, SortKeys.from_header(header, internal_date=arrival, size=size)))
        yield client, entries
        client.logout()
    finally:
        stack.stop()


_SORTS = [
    "ARRIVAL",
    "SIZE",
    "DATE",
    "SUBJECT",
    "FROM",
    "TO",
    "CC",
    "DISPLAYFROM",
    "DISPLAYTO",
    "REVERSE DATE",
    "REVERSE SUBJECT DATE",
    "CC REVERSE FROM SIZE",
]


@pytest.mark.parametrize("program", _SORTS)
def test_sort_matches_dovecot(dovecot_corpus: tuple[imaplib.IMAP4, list[tuple[int, SortKeys]]], program: str) -> None:
    client, entries = dovecot_corpus
    typ, data = client.sort(f"({program})", "UTF-8", "ALL")
    assert typ == "OK" and isinstance(data[0], bytes)
    theirs = [int(n) for n in data[0].split()]
    words = program.split()
    parsed: list[tuple[SortCriterion, bool]] = []
    reverse = False
    for word in words:
        if word == "REVERSE":
            reverse = True
            continue
        parsed.append((SortCriterion(word), reverse))
        reverse = False
    assert sort_numbers(entries, parsed) == theirs


@pytest.mark.parametrize("algorithm", list(ThreadAlgorithm))
def test_thread_matches_dovecot(
    dovecot_corpus: tuple[imaplib.IMAP4, list[tuple[int, SortKeys]]], algorithm: ThreadAlgorithm
) -> None:
    client, entries = dovecot_corpus
    typ, data = client.thread(algorithm.value, "UTF-8", "ALL")
    assert typ == "OK"
    assert thread_list(algorithm, entries) == data[0]
