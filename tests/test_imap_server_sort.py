"""SORT, SORT=DISPLAY, ESORT, THREAD, WITHIN and STATUS=SIZE on the wire
(in-process server on the fake store, real loopback sockets)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator

import trio

from imapd.message.threads import ThreadAlgorithm, thread_list
from imapd.session.context import ServerSettings
from imapd.session.sort_key_cache import SortKeyCache
from imapd.store_client import IndexColumns, IndexQuery
from imapd.store_fake import FakeStore
from mailparse.sort_keys import SortKeys
from tests.imap_server_wire import RawClient, connected, running_server, trio_test


def _msg(subject: str, sender: str, to: str, date: str, extra: str = "", *, body: str = "text") -> bytes:
    head = f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n{extra}"
    return (head + "\r\n" + body + "\r\n").encode()


# 1: oldest sent, subject "b"; 2: "Re: a" reply to 4; 3: "a" newest; 4: root of 2
MESSAGES = (
    _msg(
        "b topic", "Zed <aa@example.org>", "cc@example.org", "Mon, 01 Jun 2026 10:00:00 +0000", "Message-ID: <m1@x>\r\n"
    ),
    _msg(
        "Re: a topic",
        "Ann <zz@example.org>",
        '"Bob" <bb@example.org>',
        "Wed, 03 Jun 2026 10:00:00 +0000",
        "Message-ID: <m2@x>\r\nIn-Reply-To: <m4@x>\r\nReferences: <m4@x>\r\n",
        body="a longer body text for SIZE ordering " * 4,
    ),
    _msg("a topic", "mm@example.org", "aa@example.org", "Thu, 04 Jun 2026 10:00:00 +0000", "Message-ID: <m3@x>\r\n"),
    _msg(
        "a topic", "Bea <yy@example.org>", "dd@example.org", "Tue, 02 Jun 2026 10:00:00 +0000", "Message-ID: <m4@x>\r\n"
    ),
)
DATES = ('"01-Jun-2026 10:00:00 +0000"', '"03-Jun-2026 10:00:00 +0000"', '"04-Jun-2026 10:00:00 +0000"', None)


async def _fill(client: RawClient) -> None:
    for data, date in zip(MESSAGES, DATES, strict=True):
        when = f" {date}" if date else ""  # the last one arrives now (for WITHIN)
        lines = await client.command(f"APPEND INBOX (){when} {{{len(data)}+}}\r\n".encode() + data)
        assert b"OK" in lines[-1], lines
    assert b"OK" in (await client.command("SELECT INBOX"))[-1]


def _esearch(lines: list[bytes]) -> bytes:
    """The ESEARCH line with its TAG correlator checked and taken out."""
    line = _untagged(lines, b"ESEARCH")
    tag = lines[-1].split(b" ", 1)[0]
    assert line.startswith(b'* ESEARCH (TAG "' + tag + b'")'), lines
    return line.replace(b' (TAG "' + tag + b'")', b"")


def _untagged(lines: list[bytes], name: bytes) -> bytes:
    found = [line for line in lines if line.startswith(b"* " + name)]
    assert len(found) == 1 and b"OK" in lines[-1], lines
    return found[0].rstrip(b"\r\n")


@trio_test
async def test_sort_criteria_reverse_uid_and_display() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        caps = b"".join(await c.command("CAPABILITY"))
        for cap in (b"SORT", b"SORT=DISPLAY", b"THREAD=REFERENCES", b"THREAD=REFS", b"THREAD=ORDEREDSUBJECT"):
            assert b" " + cap + b" " in caps
        for cap in (b"I18NLEVEL=1", b"ESORT", b"WITHIN", b"STATUS=SIZE"):
            assert b" " + cap + b" " in caps
        await _fill(c)
        assert _untagged(await c.command("SORT (SUBJECT) UTF-8 ALL"), b"SORT") == b"* SORT 2 3 4 1"
        assert _untagged(await c.command("SORT (SUBJECT DATE) UTF-8 ALL"), b"SORT") == b"* SORT 4 2 3 1"
        assert _untagged(await c.command("SORT (DATE) US-ASCII ALL"), b"SORT") == b"* SORT 1 4 2 3"
        assert _untagged(await c.command("SORT (REVERSE DATE) UTF-8 ALL"), b"SORT") == b"* SORT 3 2 4 1"
        assert _untagged(await c.command("SORT (FROM) UTF-8 ALL"), b"SORT") == b"* SORT 1 3 4 2"
        assert _untagged(await c.command("SORT (DISPLAYFROM) UTF-8 ALL"), b"SORT") == b"* SORT 2 4 3 1"
        assert _untagged(await c.command("SORT (DISPLAYTO) UTF-8 ALL"), b"SORT") == b"* SORT 3 2 1 4"
        assert _untagged(await c.command("SORT (REVERSE SIZE) UTF-8 ALL"), b"SORT").startswith(b"* SORT 2 ")
        # The SEARCH program selects; numbers are UIDs for UID SORT (UIDs here are 1..4 too: shift them).
        assert b"OK" in (await c.command("STORE 1 +FLAGS (\\Seen)"))[-1]
        assert _untagged(await c.command("SORT (SUBJECT) UTF-8 UNSEEN"), b"SORT") == b"* SORT 2 3 4"
        assert _untagged(await c.command("SORT (SUBJECT) UTF-8 SUBJECT nothing-like-this"), b"SORT") == b"* SORT"
        assert b"OK" in (await c.command("UID MOVE 1 Trash"))[-1]
        assert _untagged(await c.command("UID SORT (DATE) UTF-8 ALL"), b"SORT") == b"* SORT 4 2 3"
        assert _untagged(await c.command("SORT (DATE) UTF-8 ALL"), b"SORT") == b"* SORT 3 1 2"


@trio_test
async def test_sort_refusals() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        assert b"BAD" in (await c.command("SORT (DATE) UTF-8 ALL"))[-1]  # not selected
        await _fill(c)
        lines = await c.command("SORT (DATE) KOI8-R ALL")
        assert lines[-1].startswith(b"t") and b"NO [BADCHARSET" in lines[-1], lines
        assert b"BAD" in (await c.command("SORT (DATE) ALL"))[-1]  # charset is mandatory
        assert b"BAD" in (await c.command("SORT (COLOUR) UTF-8 ALL"))[-1]
        assert b"BAD" in (await c.command("SORT () UTF-8 ALL"))[-1]
        assert b"BAD" in (await c.command("SORT (REVERSE) UTF-8 ALL"))[-1]
        assert b"BAD" in (await c.command("THREAD SPAGHETTI UTF-8 ALL"))[-1]
        assert b"NO [BADCHARSET" in (await c.command("THREAD REFS X-UNKNOWN ALL"))[-1]


@trio_test
async def test_esort_min_max_all_in_sort_order() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        await _fill(c)
        line = _esearch(await c.command("SORT RETURN (MIN MAX ALL COUNT) (REVERSE DATE) UTF-8 ALL"))
        assert line == b"* ESEARCH MIN 3 MAX 1 ALL 3,2,4,1 COUNT 4"
        line = _esearch(await c.command("SORT RETURN (ALL) (DATE) UTF-8 ALL"))
        assert line == b"* ESEARCH ALL 1,4,2:3"
        line = _esearch(await c.command("UID SORT RETURN () (SUBJECT) UTF-8 ALL"))
        assert line == b"* ESEARCH UID ALL 2:4,1"
        line = _esearch(await c.command("SORT RETURN (COUNT) (DATE) UTF-8 SUBJECT nothing-like-this"))
        assert line == b"* ESEARCH COUNT 0"
        # SAVE keeps the set for "$" (SEARCHRES), without output of its own.
        lines = await c.command("SORT RETURN (SAVE) (DATE) UTF-8 SUBJECT topic NOT FROM zed")
        assert not [x for x in lines if x.startswith(b"* ESEARCH")] and b"OK" in lines[-1]
        assert _untagged(await c.command("SEARCH $"), b"SEARCH") == b"* SEARCH 2 3 4"


@trio_test
async def test_thread_algorithms() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        await _fill(c)
        # REFERENCES: 2 replies to 4; 3 has the same base subject and neither 4 nor 3 is a reply,
        # so both go under a dummy parent (RFC 5256 REFERENCES step 5).
        assert _untagged(await c.command("THREAD REFERENCES UTF-8 ALL"), b"THREAD") == b"* THREAD (1)((4 2)(3))"
        assert _untagged(await c.command("THREAD ORDEREDSUBJECT UTF-8 ALL"), b"THREAD") == b"* THREAD (1)(4 (2)(3))"
        refs = _untagged(await c.command("THREAD REFS UTF-8 ALL"), b"THREAD")
        assert refs.startswith(b"* THREAD ") and b"(4 2)" in refs, refs
        assert (
            _untagged(await c.command("UID THREAD REFERENCES UTF-8 NOT UID 4"), b"THREAD") == b"* THREAD (1)(3 2)"
        )  # 2 is a "Re:" of 3's subject
        assert _untagged(await c.command("THREAD REFERENCES UTF-8 SUBJECT nothing-like-this"), b"THREAD") == (
            b"* THREAD"
        )


@trio_test
async def test_sort_keys_are_cached_across_sessions() -> None:
    async with running_server() as (_, ports, store), connected(ports[0]) as c:
        assert isinstance(store, FakeStore)
        await c.login()
        await _fill(c)
        before, scans = len(store.fetch_requests), len(store.index_queries)
        assert _untagged(await c.command("SORT (DATE) UTF-8 ALL"), b"SORT") == b"* SORT 1 4 2 3"
        # The keys the store keeps: one index scan, no header fetch.
        assert store.fetch_requests[before:] == []
        assert [q.with_sort_keys for q in store.index_queries[scans:]] == [True]
        async with connected(ports[0]) as other:
            await other.login()
            assert b"OK" in (await other.command("EXAMINE INBOX"))[-1]
            before, scans = len(store.fetch_requests), len(store.index_queries)
            assert _untagged(await other.command("SORT (DATE) UTF-8 ALL"), b"SORT") == b"* SORT 1 4 2 3"
            assert _untagged(await other.command("THREAD REFS UTF-8 ALL"), b"THREAD").startswith(b"* THREAD")
            # keys from the cache, no store call at all
            assert store.fetch_requests[before:] == [] and store.index_queries[scans:] == []


@trio_test
async def test_within_younger_older() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        await _fill(c)
        # Messages 1-3 arrived in June 2026 (explicit INTERNALDATE), message 4 just now.
        june = int(time.time()) - 1_780_308_000  # seconds since 01-Jun-2026 10:00 UTC (negative before)
        assert _untagged(await c.command("SEARCH YOUNGER 3600"), b"SEARCH") == b"* SEARCH 4"
        assert _untagged(await c.command("SEARCH OLDER 3600"), b"SEARCH") == (
            b"* SEARCH 1 2 3" if june > 3600 else b"* SEARCH"
        )
        assert _untagged(await c.command("UID SEARCH NOT YOUNGER 3600"), b"SEARCH") == (
            b"* SEARCH 1 2 3" if june > 3600 else b"* SEARCH"
        )
        assert _untagged(await c.command("SORT (DATE) UTF-8 YOUNGER 3600"), b"SORT") == b"* SORT 4"
        assert b"BAD" in (await c.command("SEARCH YOUNGER 0"))[-1]  # nz-number (RFC 5032)
        assert b"BAD" in (await c.command("SEARCH OLDER"))[-1]


@trio_test
async def test_status_size_is_the_total_of_the_octets() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        await _fill(c)
        total = sum(len(m) for m in MESSAGES)
        assert b"OK" in (await c.command("UNSELECT"))[-1]
        line = _untagged(await c.command("STATUS INBOX (MESSAGES SIZE)"), b"STATUS")
        assert line == b'* STATUS "INBOX" (MESSAGES 4 SIZE %d)' % total


@trio_test
async def test_sort_leaves_out_what_another_session_expunged_and_defers_the_expunge() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c, connected(ports[0]) as other:
        await c.login()
        await _fill(c)
        assert _untagged(await c.command("SORT (DATE) UTF-8 ALL"), b"SORT") == b"* SORT 1 4 2 3"  # keys cached
        await other.login()
        assert b"OK" in (await other.command("SELECT INBOX"))[-1]
        assert b"OK" in (await other.command("STORE 1 +FLAGS.SILENT (\\Deleted)"))[-1]
        assert b"OK" in (await other.command("EXPUNGE"))[-1]
        lines = await c.command("SORT (DATE) UTF-8 ALL")
        assert not [x for x in lines if x.endswith(b"EXPUNGE\r\n")], lines  # not during SORT (RFC 3501 7.4.1)
        assert _untagged(lines, b"SORT") == b"* SORT 4 2 3"  # still numbered as this session knows them
        assert _untagged(await c.command("THREAD REFERENCES UTF-8 ALL"), b"THREAD") == b"* THREAD ((4 2)(3))"
        assert b"* 1 EXPUNGE\r\n" in await c.command("NOOP")
        assert _untagged(await c.command("SORT (DATE) UTF-8 ALL"), b"SORT") == b"* SORT 3 1 2"


# (command, whether the store's keys are read once the cache cannot hold the mailbox)
_SORTS_BEYOND_THE_CACHE = (
    ("SORT (DATE) UTF-8 ALL", True),
    ("UID SORT (REVERSE DATE) UTF-8 ALL", True),
    ("SORT (SIZE DATE) UTF-8 ALL", True),
    ("SORT (REVERSE ARRIVAL) UTF-8 ALL", False),  # the index's date column only
    ("SORT (DATE) UTF-8 NOT SUBJECT b", True),
    ("UID SORT (REVERSE SIZE) UTF-8 UID 2:4", False),
    ("SORT (SUBJECT DATE) UTF-8 ALL", True),  # strings: SortKeys, not cached
    ("THREAD REFERENCES UTF-8 ALL", True),
)


@trio_test
async def test_sorts_over_more_messages_than_the_key_cache_holds_give_the_same_answers() -> None:
    """Beyond the cache's bound a SORT by ARRIVAL, SIZE and DATE sorts the index's columns (and
    the sent dates inside the stored keys) without building SortKeys, and nothing is cached
    (caching would only evict): the answers are those of the cached path."""
    answers: dict[int, list[bytes]] = {}
    for cache_bytes in (SortKeyCache().max_bytes, 0):
        settings = ServerSettings(allow_plaintext_login=True, tls_available=False, sort_cache_bytes=cache_bytes)
        async with running_server(settings=settings) as (server, ports, store), connected(ports[0]) as c:
            assert isinstance(store, FakeStore)
            await c.login()
            await _fill(c)
            answers[cache_bytes] = []
            for line, reads_keys in _SORTS_BEYOND_THE_CACHE:
                before, scans = len(store.fetch_requests), len(store.index_queries)
                lines = await c.command(line)
                answers[cache_bytes].append(_untagged(lines, b"THREAD" if "THREAD" in line else b"SORT"))
                assert store.fetch_requests[before:] == []  # stored keys: no header fetch on either path
                if cache_bytes == 0:
                    assert store.index_queries[-1].with_sort_keys is reads_keys, line
                    assert len(store.index_queries) > scans and len(server.ctx.sort_keys) == 0
    assert answers[0] == answers[SortKeyCache().max_bytes]
    assert answers[0][:2] == [b"* SORT 1 4 2 3", b"* SORT 3 2 4 1"]


class _KeysOfOddUidsOnly(FakeStore):
    """A store whose even UIDs have no stored keys (messages stored before the store kept them)."""

    async def scan_index(self, user: str, mailbox_id: int, query: IndexQuery) -> AsyncGenerator[IndexColumns, None]:
        async for cols in super().scan_index(user, mailbox_id, query):
            if cols.sort_keys:
                blanked = [raw if uid % 2 else b"" for uid, raw in zip(cols.uids, cols.sort_keys, strict=True)]
                cols = dataclasses.replace(cols, sort_keys=blanked)
            yield cols


async def _answers_with_and_without_stored_keys(commands: tuple[str, ...], name: bytes) -> list[list[bytes]]:
    """The `name` answers of `commands` past the key cache, from a store with every message's
    keys and from one whose even UIDs have none (read from their headers: checked)."""
    answers: list[list[bytes]] = []
    for store in (FakeStore(), _KeysOfOddUidsOnly()):
        store.create_user("alice", "secret")
        settings = ServerSettings(allow_plaintext_login=True, tls_available=False, sort_cache_bytes=0)
        async with running_server(store, settings) as (_, ports, _store), connected(ports[0]) as c:
            await c.login()
            await _fill(c)
            before = len(store.fetch_requests)
            answers.append([_untagged(await c.command(line), name) for line in commands])
            assert (len(store.fetch_requests) > before) is isinstance(store, _KeysOfOddUidsOnly)
    return answers


@trio_test
async def test_threads_beyond_the_key_cache_read_the_headers_of_messages_without_stored_keys() -> None:
    threads = ("UID THREAD REFERENCES UTF-8 ALL", "THREAD ORDEREDSUBJECT UTF-8 ALL", "UID THREAD REFS UTF-8 ALL")
    answers = await _answers_with_and_without_stored_keys(threads, b"THREAD")
    assert answers[0] == answers[1]


@trio_test
async def test_sorts_by_date_beyond_the_key_cache_date_messages_without_stored_keys_from_their_headers() -> None:
    sorts = ("UID SORT (DATE) UTF-8 ALL", "SORT (REVERSE DATE) UTF-8 ALL", "UID SORT (REVERSE DATE) UTF-8 ALL")
    answers = await _answers_with_and_without_stored_keys(sorts, b"SORT")
    assert answers[0] == answers[1]
    assert answers[0][0] != answers[0][2]  # the dates order the messages (not a constant answer)


def test_sort_key_cache_is_a_bounded_lru() -> None:
    keys = SortKeys.from_header(b"Subject: x\r\n\r\n", internal_date=1, size=2)
    cache = SortKeyCache(max_entries=2)
    cache.put(("u", 1, 7, 1), keys)
    cache.put(("u", 1, 7, 2), keys)
    assert cache.get(("u", 1, 7, 1)) is keys  # now the most recent
    cache.put(("u", 1, 7, 3), keys)
    assert len(cache) == 2
    assert cache.get(("u", 1, 7, 2)) is None and cache.get(("u", 1, 7, 1)) is keys
    assert cache.get(("u", 1, 8, 1)) is None  # another UIDVALIDITY is another message


def _top_level(listing: bytes) -> list[bytes]:
    """The threads of a THREAD response's list, outer parentheses removed."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(listing):
        if ch == 0x28:
            depth += 1
            start = i + 1 if depth == 1 else start
        elif ch == 0x29:
            depth -= 1
            if depth == 0:
                out.append(listing[start:i])
    return out


@trio_test
async def test_big_sorts_and_threads_run_off_the_event_loop_with_the_same_answers() -> None:
    count = 2100  # over sort_commands._IN_THREAD_FROM
    mail = [
        f"Subject: s{n % 50}\r\nDate: {1 + n // 100:02d} Jan 2026 10:00:{n % 60:02d} +0000\r\n\r\nb\r\n"
        for n in range(count)
    ]
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        wire = b"APPEND INBOX" + b"".join(b" {%d+}\r\n" % len(m) + m.encode() for m in mail)
        assert b"OK" in (await c.command(wire))[-1]
        assert b"OK" in (await c.command("SELECT INBOX"))[-1]
        # Ties (the same arrival second) go by message number.
        expected = sorted(range(1, count + 1), key=lambda seq: (f"s{(seq - 1) % 50}", seq))
        answer = _untagged(await c.command("SORT (SUBJECT ARRIVAL) UTF-8 ALL"), b"SORT")
        assert answer == b"* SORT " + b" ".join(b"%d" % n for n in expected)
        # ORDEREDSUBJECT: one thread per subject; the same list as the algorithm gives in-process.
        answer = _untagged(await c.command("THREAD ORDEREDSUBJECT UTF-8 ALL"), b"THREAD")
        assert len(_top_level(answer[9:])) == 50
        entries = [(n + 1, SortKeys.from_header(m.encode(), internal_date=0, size=0)) for n, m in enumerate(mail)]
        assert answer == b"* THREAD " + thread_list(ThreadAlgorithm.ORDEREDSUBJECT, entries)
        assert answer.startswith(b"* THREAD (1 (51)(151)(101)")  # 151 was sent before 101


def test_the_sort_key_cache_is_bounded_in_bytes() -> None:
    header = b"Subject: a fairly ordinary subject line\r\nFrom: Ann <ann@example.org>\r\nMessage-ID: <x@y>\r\n\r\n"
    keys = SortKeys.from_header(header, internal_date=1, size=100)
    cache = SortKeyCache(max_bytes=64 * 1024)
    for uid in range(1, 5001):
        cache.put(("ann", 1, 7, uid), keys)
    assert 64 <= len(cache) < 5000 and cache.bytes <= 64 * 1024  # ~0.5 KiB an entry: about 130 kept
    assert cache.get(("ann", 1, 7, 5000)) == keys and cache.get(("ann", 1, 7, 1)) is None  # the oldest went
    held, count = cache.bytes, len(cache)
    cache.put(("ann", 1, 7, 5000), keys)  # replacing an entry does not count it twice
    assert (cache.bytes, len(cache)) == (held, count)


@trio_test
async def test_cached_keys_and_envelopes_go_once_no_session_has_the_mailbox_selected() -> None:
    """Issue 17: the process-wide caches hold a mailbox's values only while a session has it
    selected (plus the linger), so an idle imapd holds none of them."""
    settings = ServerSettings(allow_plaintext_login=True, tls_available=False, mailbox_linger=0.2)
    async with running_server(settings=settings) as (server, ports, _store):
        ctx = server.ctx
        async with connected(ports[0]) as first, connected(ports[0]) as second:
            await first.login()
            await _fill(first)
            await second.login()
            for c in (first, second):
                assert b"OK" in (await c.command("SELECT INBOX"))[-1]
            assert _untagged(await first.command("SORT (DATE) UTF-8 ALL"), b"SORT") == b"* SORT 1 4 2 3"
            assert b"OK" in (await first.command("FETCH 1:* (ENVELOPE)"))[-1]
            assert (len(ctx.sort_keys), len(ctx.envelopes)) == (4, 4)
            await first.command("LOGOUT")
            await trio.sleep(0.6)
            assert (len(ctx.sort_keys), len(ctx.envelopes)) == (4, 4)  # the second session still has it
            assert b"OK" in (await second.command("UNSELECT"))[-1]
            await trio.sleep(0.1)
            assert len(ctx.sort_keys) == 4  # lingering: a client that reselects at once finds them
            await trio.sleep(1.5)
            assert (len(ctx.sort_keys), len(ctx.envelopes), ctx.sort_keys.bytes, ctx.envelopes.bytes) == (0, 0, 0, 0)
            assert b"OK" in (await second.command("SELECT INBOX"))[-1]
            assert _untagged(await second.command("SORT (DATE) UTF-8 ALL"), b"SORT") == b"* SORT 1 4 2 3"
            assert len(ctx.sort_keys) == 4
