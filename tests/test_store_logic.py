"""Unit tests of the store's pure pieces: names, UID sets, records, passwords, login cache."""

from __future__ import annotations

import time

import pytest

from store import names, uidset
from store.bodies import header_block
from store.errors import InvalidArgument
from store.passwords import CredentialCache, hash_password, verify_password
from store.schema import MailboxRecord, MessageRecord


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [("INBOX", "INBOX"), ("inbox", "INBOX"), ("Inbox/Sub", "INBOX/Sub"), ("a/b/c", "a/b/c"), ("Entwürfe", "Entwürfe")],
)
def test_mailbox_names_are_canonicalised(raw: str, canonical: str) -> None:
    assert names.mailbox_name(raw) == canonical


@pytest.mark.parametrize("bad", ["", "/a", "a/", "a//b", "a\x01b", "x" * 256, "a*b", "a%"])
def test_bad_mailbox_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        names.mailbox_name(bad)


def test_user_names_and_addresses() -> None:
    assert names.user_name("alice.b-c_1") == "alice.b-c_1"
    for bad in ("Alice", "", "a" * 65, "a b", "a@b"):
        with pytest.raises(InvalidArgument):
            names.user_name(bad)
    assert names.address(" Alice@Example.ORG ") == "alice@example.org"
    for bad in ("alice", "@example.org", "alice@", "a@b@c", "al ice@example.org"):
        with pytest.raises(InvalidArgument):
            names.address(bad)
    assert names.strip_tag("bob+lists@example.org") == "bob@example.org"
    assert names.strip_tag("bob@example.org") is None


def test_flags_are_canonical_and_validated() -> None:
    assert names.flags(["\\seen", "$Junk", "\\SEEN", "\\Flagged"]) == ("$Junk", "\\Flagged", "\\Seen")
    for bad in ("\\Recent", "\\Bogus", "a b", "(x", ""):
        with pytest.raises(InvalidArgument):
            names.flag(bad)


@pytest.mark.parametrize(
    ("text", "highest", "ranges"),
    [
        ("1:5,7,10:*", 12, [(1, 5), (7, 7), (10, 12)]),
        ("*", 9, [(9, 9)]),
        ("5:3", 9, [(3, 5)]),
        ("100:*", 50, [(50, 100)]),
        ("1:3,2:6,8", 9, [(1, 6), (8, 8)]),
        ("1:*", 0, [(0, 1)]),
        ("60", 9, [(60, 60)]),  # one UID: parsed without the pattern
        ("4294967295", 9, [(4294967295, 4294967295)]),
    ],
)
def test_uid_sets_resolve(text: str, highest: int, ranges: list[tuple[int, int]]) -> None:
    parsed = uidset.parse(text)
    assert parsed.resolve(highest) == ranges
    assert parsed.has_star == ("*" in text)  # without it the highest UID is not read
    if not parsed.has_star:
        assert parsed.resolve(0) == ranges


@pytest.mark.parametrize(
    ("uids", "text"),
    [([], ""), ([5], "5"), ([3, 1, 2], "1:3"), ([1, 1, 2], "1:2"), ([1, 2, 3, 7], "1:3,7"), ([9, 4, 5], "4:5,9")],
)
def test_uid_lists_format_as_compact_ranges(uids: list[int], text: str) -> None:
    assert uidset.format_uids(uids) == text
    assert uidset.format_uids(range(1, 1001)) == "1:1000"


@pytest.mark.parametrize("bad", ["", "0", "1:0", "a", "1,,2", "1:2:3", "-1", "1 ,2", "4294967296"])
def test_malformed_uid_sets_are_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        uidset.parse(bad)


def test_records_round_trip() -> None:
    mbox = MailboxRecord("alice", "INBOX/Ünter", 7, 3, 9, 2, 1, 1, 1234, "\\Sent", True, True)
    assert MailboxRecord.unpack(mbox.pack()) == mbox
    msg = MessageRecord(5, 2, -1000, -120, 4096, 77, ("$Junk", "\\Seen"))
    assert MessageRecord.unpack(msg.pack()) == msg
    assert MessageRecord.unpack(msg.evolve(flags=()).pack()).flags == ()


def test_header_block() -> None:
    assert header_block(b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore") == b"A: 1\r\nB: 2\r\n\r\n"
    assert header_block(b"A: 1\nB: 2\n\nbody") == b"A: 1\nB: 2\n\n"
    assert header_block(b"A: 1\r\n") == b"A: 1\r\n"


def test_password_hash_is_salted_and_verifies() -> None:
    first, second = hash_password("s3cret"), hash_password("s3cret")
    assert first != second and "s3cret" not in first
    assert first.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert verify_password("s3cret", first)
    assert not verify_password("s3cret!", first)


def test_credential_cache_bounds_expires_and_forgets() -> None:
    cache = CredentialCache(max_entries=3, ttl_seconds=0.2)
    cache.remember("alice", "pw")
    assert cache.check("alice", "pw")
    assert not cache.check("alice", "other")
    assert not cache.check("bob", "pw")
    for n in range(5):
        cache.remember(f"u{n}", "pw")
    assert len(cache) == 3
    assert not cache.check("alice", "pw")  # evicted, oldest first
    cache.forget_user("u4")
    assert not cache.check("u4", "pw")
    assert cache.check("u3", "pw")
    time.sleep(0.25)
    assert not cache.check("u3", "pw")


def test_selectable_modseq_reads_only_what_it_must_and_leaves_the_rest_to_the_full_decode() -> None:
    """The no-op STORE check takes HIGHESTMODSEQ from the record's fixed part: only for the
    owner (not a user whose name the owner's starts with) and a selectable mailbox."""
    raw = MailboxRecord("ab", "INBOX", 7, 10, 42).pack()
    assert MailboxRecord.selectable_modseq(raw, "ab") == 42 == MailboxRecord.unpack(raw).highestmodseq
    assert MailboxRecord.selectable_modseq(memoryview(raw), "ab") == 42
    assert MailboxRecord.selectable_modseq(raw, "a") is None  # "ab"'s, not "a"'s
    assert MailboxRecord.selectable_modseq(raw, "abc") is None
    placeholder = MailboxRecord("ab", "p", 7, 10, 42, noselect=True).pack()
    assert MailboxRecord.selectable_modseq(placeholder, "ab") is None  # the full decode raises FailedPrecondition


@pytest.mark.parametrize(
    "text", ["1", "60", "0001", "4294967295", "0", "4294967296", "99999999999", "", "1:2", "*", "1,2"]
)
def test_single_uid_shortcut_answers_as_parse(text: str) -> None:
    """uidset.single (a lone UID, the usual STORE/FETCH set) agrees with parse + resolve,
    errors included; any other set is left to parse (None)."""
    try:
        expected: object = uidset.parse(text).resolve(7)
    except InvalidArgument as exc:
        expected = type(exc)
    try:
        uid = uidset.single(text)
    except InvalidArgument as exc:
        assert expected is type(exc), text
        return
    if uid is None:
        assert not (text.isdecimal() and len(text) <= 10), text
    else:
        assert expected == [(uid, uid)], text
