"""Another session's completed change is reported by this session's next command
(issue 11 item 2), against a real `mailha store serve` + `mailha imapd serve`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.imap_spawn import SpawnedStack
from store.client import StoreClient
from tests.differential.wire import WireClient

ROUNDS = 100


@pytest.fixture(scope="module")
def stack() -> Iterator[SpawnedStack]:
    spawned = SpawnedStack().start()
    try:
        with StoreClient(spawned.store_address) as client:
            client.create_user("peer", "peer-secret")
        yield spawned
    finally:
        spawned.stop()


def _session(port: int) -> WireClient:
    client = WireClient(port)
    assert client.command(b"l", b"LOGIN peer peer-secret")[-1].startswith(b"l OK")
    assert client.command(b"s", b"SELECT INBOX")[-1].startswith(b"s OK")
    return client


def test_next_command_of_a_peer_reports_append_store_and_expunge_100_of_100(stack: SpawnedStack) -> None:
    a, b = _session(stack.port), _session(stack.port)
    try:
        missed = {"append": 0, "store": 0, "expunge": 0}
        message = b"From: a@example.org\r\nSubject: round\r\n\r\nbody\r\n"
        for i in range(ROUNDS):
            answer = a.command(b"a%d" % i, b"APPEND INBOX {%d}\r\n" % len(message) + message)
            assert answer[-1].startswith(b"a%d OK" % i), answer
            seen = b.command(b"n%d" % i, b"NOOP")
            if b"* %d EXISTS\r\n" % (i + 1) not in seen:
                missed["append"] += 1
                b.command(b"r%d" % i, b"NOOP")  # resynchronise the count for the next round
        assert a.command(b"na", b"NOOP")[-1].startswith(b"na OK")
        for i in range(ROUNDS):
            seq = i + 1
            answer = a.command(b"s%d" % i, b"STORE %d +FLAGS.SILENT (\\Flagged)" % seq)
            assert answer[-1].startswith(b"s%d OK" % i), answer
            seen = b.command(b"f%d" % i, b"NOOP")
            if not any(line.startswith(b"* %d FETCH" % seq) and b"\\Flagged" in line for line in seen):
                missed["store"] += 1
        for i in range(ROUNDS):
            answer = a.command(b"d%d" % i, b"STORE 1 +FLAGS.SILENT (\\Deleted)")
            assert answer[-1].startswith(b"d%d OK" % i), answer
            b.command(b"g%d" % i, b"NOOP")  # B sees the flag first: only the EXPUNGE is under test
            answer = a.command(b"e%d" % i, b"EXPUNGE")
            assert answer[-1].startswith(b"e%d OK" % i) and b"* 1 EXPUNGE\r\n" in answer, answer
            seen = b.command(b"x%d" % i, b"NOOP")
            if b"* 1 EXPUNGE\r\n" not in seen:
                missed["expunge"] += 1
                b.command(b"y%d" % i, b"NOOP")
        assert missed == {"append": 0, "store": 0, "expunge": 0}
    finally:
        a.close()
        b.close()


def _lines(answer: list[bytes], prefix: bytes) -> list[bytes]:
    return [line for line in answer if line.startswith(prefix)]


def test_recent_is_seen_by_exactly_one_session_and_unseen_is_announced(stack: SpawnedStack) -> None:
    with StoreClient(stack.store_address) as store:
        store.create_user("fresh", "fresh-secret")
    a, b = WireClient(stack.port), WireClient(stack.port)
    try:
        for client in (a, b):
            assert client.command(b"l", b"LOGIN fresh fresh-secret")[-1].startswith(b"l OK")
        message = b"Subject: r\r\n\r\nbody\r\n"
        for i in range(3):
            flags = b"(\\Seen) " if i == 0 else b""
            assert a.command(b"a", b"APPEND Drafts %s{%d}\r\n" % (flags, len(message)) + message)[-1].startswith(
                b"a OK"
            )
        examined = a.command(b"e", b"EXAMINE Drafts")
        assert b"* 3 RECENT\r\n" in examined and b"* OK [UNSEEN 2] First unseen\r\n" in examined
        selected = a.command(b"s", b"SELECT Drafts")  # EXAMINE took nothing: SELECT gets all three
        assert b"* 3 RECENT\r\n" in selected and b"* OK [UNSEEN 2] First unseen\r\n" in selected
        other = b.command(b"s", b"SELECT Drafts")
        assert b"* 0 RECENT\r\n" in other
        assert b"(RECENT 0 MESSAGES 3)" in b.command(b"t", b"STATUS Drafts (RECENT MESSAGES)")[0]
        assert _lines(a.command(b"f", b"FETCH 1:* FLAGS"), b"* ") == [
            b"* 1 FETCH (FLAGS (\\Seen \\Recent))\r\n",
            b"* 2 FETCH (FLAGS (\\Recent))\r\n",
            b"* 3 FETCH (FLAGS (\\Recent))\r\n",
        ]
        assert _lines(b.command(b"f", b"FETCH 1:* FLAGS"), b"* ") == [
            b"* 1 FETCH (FLAGS (\\Seen))\r\n",
            b"* 2 FETCH (FLAGS ())\r\n",
            b"* 3 FETCH (FLAGS ())\r\n",
        ]
        assert a.command(b"n", b"SEARCH NEW")[0] == b"* SEARCH 2 3\r\n"
        assert a.command(b"o", b"SEARCH OLD")[0] == b"* SEARCH\r\n"
        assert a.command(b"r", b"SEARCH RECENT")[0] == b"* SEARCH 1 2 3\r\n"
        assert b.command(b"n", b"SEARCH NEW")[0] == b"* SEARCH\r\n"
        assert b.command(b"o", b"SEARCH OLD")[0] == b"* SEARCH 1 2 3\r\n"
        # New mail while both have it selected: recent to exactly one of them.
        assert b.command(b"c", b"COPY 1 Drafts")[-1].startswith(b"c OK")
        seen_a, seen_b = a.command(b"n", b"NOOP"), b.command(b"n", b"NOOP")
        assert b"* 4 EXISTS\r\n" in seen_a
        recent_a = len(_lines(a.command(b"s", b"SEARCH RECENT"), b"* SEARCH")[0].split()) - 2
        recent_b = len(_lines(b.command(b"s", b"SEARCH RECENT"), b"* SEARCH")[0].split()) - 2
        assert (recent_a, recent_b) in ((4, 0), (3, 1)), (seen_a, seen_b)
        assert b"(RECENT 0)" in a.command(b"t", b"STATUS INBOX (RECENT)")[0]
    finally:
        a.close()
        b.close()


def test_own_append_into_the_selected_mailbox_is_recent_there_only(stack: SpawnedStack) -> None:
    """The append's \\Recent claim rides on the append itself (one store call): same semantics."""
    with StoreClient(stack.store_address) as store:
        store.create_user("own", "own-secret")
    a, b = WireClient(stack.port), WireClient(stack.port)
    try:
        for client in (a, b):
            assert client.command(b"l", b"LOGIN own own-secret")[-1].startswith(b"l OK")
            assert client.command(b"s", b"SELECT INBOX")[-1].startswith(b"s OK")
        message = b"Subject: mine\r\n\r\nbody\r\n"
        for i in range(2):
            answer = a.command(b"a%d" % i, b"APPEND INBOX {%d}\r\n" % len(message) + message)
            assert answer[-1].startswith(b"a%d OK [APPENDUID " % i), answer
        assert b"* 2 EXISTS\r\n" in b.command(b"n", b"NOOP")
        assert _lines(a.command(b"f", b"FETCH 1:* FLAGS"), b"* ") == [
            b"* 1 FETCH (FLAGS (\\Recent))\r\n",
            b"* 2 FETCH (FLAGS (\\Recent))\r\n",
        ]
        assert _lines(b.command(b"f", b"FETCH 1:* FLAGS"), b"* ") == [
            b"* 1 FETCH (FLAGS ())\r\n",
            b"* 2 FETCH (FLAGS ())\r\n",
        ]
        assert b"* 0 RECENT\r\n" in b.command(b"r", b"SELECT INBOX")
        # Into a mailbox it has not selected: nobody claimed it, a later SELECT gets it.
        assert a.command(b"d", b"APPEND Drafts {%d}\r\n" % len(message) + message)[-1].startswith(b"d OK")
        assert b"* 1 RECENT\r\n" in b.command(b"t", b"SELECT Drafts")
    finally:
        a.close()
        b.close()


def test_a_store_that_changes_nothing_answers_like_one_that_does(stack: SpawnedStack) -> None:
    """imapd answers a no-op STORE from its local read; a peer's change in between is honoured."""
    with StoreClient(stack.store_address) as store:
        store.create_user("noop", "noop-secret")
    a, b = WireClient(stack.port), WireClient(stack.port)
    try:
        message = b"Subject: s\r\n\r\nbody\r\n"
        for client in (a, b):
            assert client.command(b"l", b"LOGIN noop noop-secret")[-1].startswith(b"l OK")
        assert a.command(b"a", b"APPEND INBOX (\\Seen) {%d}\r\n" % len(message) + message)[-1].startswith(b"a OK")
        for client in (a, b):
            assert client.command(b"s", b"SELECT INBOX")[-1].startswith(b"s OK")
        first = a.command(b"s1", b"STORE 1 +FLAGS (\\Seen)")
        assert first == [b"s1 OK STORE completed\r\n"]  # already seen: no FETCH, as from the store
        assert b.command(b"u", b"STORE 1 -FLAGS.SILENT (\\Seen)")[-1].startswith(b"u OK")
        again = a.command(b"s2", b"STORE 1 +FLAGS (\\Seen)")
        assert again[-1] == b"s2 OK STORE completed\r\n"
        assert any(line.startswith(b"* 1 FETCH (FLAGS (\\Seen") for line in again), again
        assert any(b"\\Seen" in line for line in _lines(b.command(b"m", b"NOOP"), b"* 1 FETCH"))
        assert a.command(b"s3", b"STORE 1 -FLAGS (\\Draft)") == [b"s3 OK STORE completed\r\n"]
    finally:
        a.close()
        b.close()


def test_new_keywords_are_announced_before_a_fetch_shows_them(stack: SpawnedStack) -> None:
    a, b = _session(stack.port), _session(stack.port)
    try:
        message = b"Subject: k\r\n\r\nbody\r\n"
        assert a.command(b"a", b"APPEND INBOX {%d}\r\n" % len(message) + message)[-1].startswith(b"a OK")
        b.command(b"n", b"NOOP")
        answer = a.command(b"s", b"STORE 1 +FLAGS ($Label1)")
        flags_at = next(i for i, line in enumerate(answer) if line.startswith(b"* FLAGS "))
        fetch_at = next(i for i, line in enumerate(answer) if b"FETCH" in line and b"$Label1" in line)
        assert flags_at < fetch_at and b"$Label1" in answer[flags_at]
        assert b"$Label1" in answer[flags_at + 1] and b"PERMANENTFLAGS" in answer[flags_at + 1]
        seen = b.command(b"n", b"NOOP")  # set by another session: announced the same way
        flags_at = next(i for i, line in enumerate(seen) if line.startswith(b"* FLAGS "))
        fetch_at = next(i for i, line in enumerate(seen) if b"FETCH" in line and b"$Label1" in line)
        assert flags_at < fetch_at
        assert not any(line.startswith(b"* FLAGS") for line in b.command(b"f", b"FETCH 1:* FLAGS"))
    finally:
        a.close()
        b.close()


def test_condstore_modseq_in_every_fetch_once_enabled(stack: SpawnedStack) -> None:
    a = _session(stack.port)
    try:
        message = b"Subject: c\r\n\r\nbody\r\n"
        assert a.command(b"a", b"APPEND INBOX {%d}\r\n" % len(message) + message)[-1].startswith(b"a OK")
        answer = a.command(b"f", b"FETCH 1 (FLAGS)")
        assert b"MODSEQ" not in b"".join(answer)
        answer = a.command(b"m", b"FETCH 1 (MODSEQ)")  # implicit enable
        assert any(line.startswith(b"* OK [HIGHESTMODSEQ ") for line in answer), answer
        answer = a.command(b"s", b"STORE 1 +FLAGS (\\Seen)")
        assert any(b"FETCH (" in line and b"MODSEQ (" in line for line in answer), answer
        answer = a.command(b"g", b"FETCH 1 (FLAGS)")
        assert b"MODSEQ (" in answer[0], answer
        b = _session(stack.port)
        try:
            assert b.command(b"e", b"ENABLE CONDSTORE")[0] == b"* ENABLED CONDSTORE\r\n"
            answer = b.command(b"s", b"STORE 1 -FLAGS (\\Seen)")
            assert any(b"FETCH (" in line and b"MODSEQ (" in line for line in answer), answer
        finally:
            b.close()
    finally:
        a.close()


def test_pre_login_id_up_to_rfc_2971_limits_while_other_pre_login_lines_stay_bounded(stack: SpawnedStack) -> None:
    pairs = b" ".join(b'"field%02d" "%s"' % (i, b"v" * 1024) for i in range(30))  # ~32 KB line
    client = WireClient(stack.port)
    try:
        answer = client.command(b"i", b"ID (" + pairs + b")")
        assert answer[-1].startswith(b"i OK") and answer[0].startswith(b"* ID "), answer[-1]
        answer = client.command(b"n", b"NOOP " + b"x" * (9 * 1024))  # any other command: 8 KiB
        assert answer[-1].startswith(b"n BAD [TOOBIG]"), answer[-1]
        answer = client.command(b"j", b"ID (" + pairs + b' "more" "' + b"v" * 4096 + b'")')
        assert answer[-1].startswith(b"j BAD [TOOBIG]"), answer[-1]
        assert client.command(b"l", b"LOGIN peer peer-secret")[-1].startswith(b"l OK")
    finally:
        client.close()
