"""SEARCH and FETCH answered from the store's indexes give what the message-by-message path gives.

The pure tests compare, on a corpus of odd and ordinary messages, every index-servable
SEARCH key against `search_eval` (the scan) and the index FETCH lines against
`render_fetch` byte for byte. The last test runs imaplib against a real store and imapd.
"""

from __future__ import annotations

import datetime
import imaplib
import itertools
import random
import re
from collections.abc import AsyncGenerator, Callable
from pathlib import Path

import trio

from imapd.message.fetch_render import fetch_list, render_fetch
from imapd.message.index_fetch import INDEX_KINDS, IndexFetchRenderer, flag_list_bytes
from imapd.message.index_search import IndexTable, flag_filter, plan
from imapd.message.search_eval import SearchContext, search
from imapd.protocol import search_spec as S
from imapd.protocol.fetch_spec import SimpleItem
from imapd.protocol.sequence import SequenceSet
from imapd.protocol.values import encode
from imapd.session import index_queries
from imapd.store_client import AppendSpec, FlagMode, IndexColumns, IndexQuery
from imapd.store_fake import FakeStore
from mailparse.search_fields import indexed_text, text_matches
from mailparse.view import MessageView
from store.bodies import header_block
from tests.imap_clients_stack import USERS, ImapStack, imap_stack  # noqa: F401
from tests.imap_server_wire import connected, running_server, trio_test

CORPUS = Path(__file__).parent / "data" / "mime"
FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Work", "Later")
SUBJECTS = (
    "Hello World",
    "=?UTF-8?B?w4RwZmVsIHVuZCBCaXJuZW4=?=",
    "=?ISO-8859-1?Q?Stra=DFe_und_Platz?=",
    "Re: Quarterly\r\n report",
    "",
)
T0 = 1612137600  # 2021-02-01 00:00 UTC


def _generated(n: int, rng: random.Random) -> bytes:
    subject = SUBJECTS[n % len(SUBJECTS)]
    cc = f"Cc: Carol <carol{n % 4}@example.org>\r\n" if n % 2 else ""
    return (
        f"From: =?UTF-8?Q?J=C3=BCrgen?= <j{n % 7}@example.org>\r\nTo: team{n % 3}@example.org\r\n{cc}"
        f"Subject: {subject}\r\nSubject: second {n}\r\n\r\nbody {rng.random()}\r\n"
    ).encode()


def _mailbox() -> list[tuple[MessageView, str]]:
    rng = random.Random(5)
    datas = [p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))]
    datas += [_generated(n, rng) for n in range(60)]
    out = []
    uid = 0
    for i, data in enumerate(datas):
        uid += rng.choice((1, 1, 1, 3))
        flags = tuple(sorted(rng.sample(FLAGS, rng.randint(0, 3))))
        when = T0 + rng.randint(-3, 3) * 86400 + rng.randint(-7200, 7200)
        zone = rng.choice((0, 60, -300, 330, 1439, -1439, 5000))
        header = header_block(data[: 1024 * 1024])
        view = MessageView(
            uid=uid,
            modseq=10 + i,
            flags=flags,
            internal_date=when,
            tz_offset_minutes=zone,
            size=len(data),
            header=header,
        )
        out.append((view, indexed_text(header).decode("utf-8", "surrogatepass")))
    return out


MAILBOX = _mailbox()
UIDS = [v.uid for v, _ in MAILBOX]
CONTEXT = SearchContext(len(UIDS), UIDS[-1], frozenset(UIDS[::5]))


def _keys() -> list[S.SearchKey]:
    keys: list[S.SearchKey] = [S.AllKey()]
    for flag in (*FLAGS, "\\seen", "$work", "missing"):
        keys += [S.FlagKey(flag), S.FlagKey(flag, present=False)]
    for size in (100, 500, 1000, 3000):
        keys += [S.SizeKey(S.SizeRelation.LARGER, size), S.SizeKey(S.SizeRelation.SMALLER, size)]
    keys += [S.ModSeqKey(m) for m in (1, 30, 60)]
    for text in (b"1:10", b"5,7,20:*", b"*", b"$", b"3:2,40"):
        keys += [S.SequenceKey(SequenceSet.parse(text)), S.SequenceKey(SequenceSet.parse(text), uid=True)]
    for days in range(-4, 5):
        day = datetime.date(2021, 2, 1) + datetime.timedelta(days=days)
        keys += [S.DateKey(S.DateField.INTERNAL, rel, day) for rel in S.DateRelation]
    for field, needle in itertools.product(
        ("SUBJECT", "FROM", "TO", "CC", "BCC", "subject"),
        ("hello", "ÄPFEL", "strasse", "STRAßE", "quarterly report", "Jürgen", "example.org", "carol1", "second 4", "e"),
    ):
        keys.append(S.HeaderKey(field, needle))
    keys.append(S.NotKey(S.AndKey((S.FlagKey("\\Seen"), S.HeaderKey("SUBJECT", "hello")))))
    keys.append(S.OrKey(S.FlagKey("\\Flagged"), S.SizeKey(S.SizeRelation.LARGER, 800)))
    keys.append(S.AndKey((S.NotKey(S.FlagKey("\\Deleted")), S.SequenceKey(SequenceSet.parse(b"2:30"), uid=True))))
    return keys


def _table(key: S.SearchKey) -> IndexTable:
    p = plan(key)
    assert p is not None, f"{key} should be answered from the index"
    ids: dict[tuple[str, ...], int] = {}
    for view, _ in MAILBOX:
        ids.setdefault(view.flags, len(ids) + 1)
    table = IndexTable(
        UIDS,
        [ids[v.flags] for v, _ in MAILBOX],
        [v.modseq for v, _ in MAILBOX],
        [v.size for v, _ in MAILBOX],
        [v.internal_date for v, _ in MAILBOX],
        [v.tz_offset_minutes for v, _ in MAILBOX],
    )
    table.flag_sets = {i: flags for flags, i in ids.items()}
    table.header_hits = tuple(
        frozenset(v.uid for v, text in MAILBOX if text_matches(text.encode("utf-8", "surrogatepass"), at, needle))
        for at, needle in p.header_queries
    )
    return table


def test_index_search_equals_the_scan_for_every_servable_key() -> None:
    views = [(seq, view) for seq, (view, _) in enumerate(MAILBOX, start=1)]
    compared = 0
    for key in _keys():
        scanned = sorted(v.uid for _, v in search(key, views, CONTEXT))
        p = plan(key)
        assert p is not None
        indexed = sorted(_table(key).evaluate(key, p, CONTEXT, UIDS))
        assert indexed == scanned, f"{key}: index {indexed} scan {scanned}"
        compared += 1 if scanned else 0
    assert compared > 80  # most of the ~130 keys match something: the comparison is not of empty sets


def _filtered(table: IndexTable, held: tuple[str, ...], absent: tuple[str, ...]) -> IndexTable:
    """`table` with only the rows the store's flag filter (store.index_scan.FlagFilter) keeps."""
    want, unwanted = {f.lower() for f in held}, {f.lower() for f in absent}
    keep = set()
    for fid, flags in table.flag_sets.items():
        lowered = {f.lower() for f in flags}
        if want <= lowered and lowered.isdisjoint(unwanted):
            keep.add(fid)
    rows = [i for i, fid in enumerate(table.flag_ids) if fid in keep]
    out = IndexTable(
        *(
            [col[i] for i in rows]
            for col in (table.uids, table.flag_ids, table.modseqs, table.sizes, table.dates, table.tz_offsets)
        )
    )
    out.flag_sets = table.flag_sets
    out.header_hits = table.header_hits  # the store answers header queries over the whole range
    return out


def test_the_flag_filter_leaves_the_answer_as_it_was() -> None:
    """SEARCH asks the store for only the rows its top flag keys allow: same answer, fewer rows."""
    views = [(seq, view) for seq, (view, _) in enumerate(MAILBOX, start=1)]
    keys = _keys()
    keys.append(S.AndKey((S.FlagKey("\\SEEN", present=False), S.NotKey(S.SizeKey(S.SizeRelation.LARGER, 2000)))))
    keys.append(S.AndKey((S.FlagKey("\\Flagged"), S.OrKey(S.HeaderKey("SUBJECT", "e"), S.NotKey(S.AllKey())))))
    filtered = smaller = 0
    for key in keys:
        held, absent = flag_filter(key)
        if not held and not absent:
            continue
        p = plan(key)
        assert p is not None
        table = _filtered(_table(key), held, absent)
        smaller += len(table.uids) < len(UIDS)
        scanned = sorted(v.uid for _, v in search(key, views, CONTEXT))
        assert sorted(table.evaluate(key, p, CONTEXT, UIDS)) == scanned, key
        filtered += 1
    assert filtered > 20 and smaller > 10, (filtered, smaller)


def test_keys_the_index_cannot_answer_go_to_the_scan() -> None:
    assert plan(S.FlagKey("\\Recent")) is None
    assert plan(S.HeaderKey("X-Mailer", "x")) is None
    assert plan(S.HeaderKey("SUBJECT", "")) is None  # "field present": not in the index
    assert plan(S.DateKey(S.DateField.SENT, S.DateRelation.ON, datetime.date(2021, 2, 1))) is None
    assert plan(S.OrKey(S.FlagKey("\\Seen"), S.HeaderKey("Received", "x"))) is None
    text = plan(S.AndKey((S.TextKey("Straße"), S.BodyKey("Lunch"))))  # the store's full-text index
    assert text is not None and text.text_queries == (("strasse", False), ("lunch", True))


def test_index_fetch_lines_equal_the_renderer() -> None:
    kinds = sorted(INDEX_KINDS, key=lambda k: k.value)
    lists: list[tuple[SimpleItem, ...]] = [(SimpleItem(k),) for k in kinds]
    lists += [tuple(SimpleItem(k) for k in combo) for combo in itertools.permutations(kinds, 3)]
    for attrs in lists:
        renderer = IndexFetchRenderer(attrs)
        for seq, (view, _) in enumerate(MAILBOX, start=1):
            expected = b"* %d FETCH %s\r\n" % (seq, encode(fetch_list(render_fetch(attrs, view))))
            line = renderer.line(
                seq,
                view.uid,
                flag_list_bytes(view.flags),
                view.modseq,
                view.size,
                view.internal_date,
                view.tz_offset_minutes,
            )
            assert line == expected


def test_imaplib_flags_search_and_fetch_through_the_index(imap_stack: ImapStack) -> None:  # noqa: F811
    imap = imaplib.IMAP4_SSL("127.0.0.1", imap_stack.tls_port, ssl_context=imap_stack.ssl_context())
    try:
        imap.login("carol", USERS["carol"])
        imap.create("IndexBox")
        for n in range(40):
            flags = "(\\Seen)" if n % 4 else "()"
            imap.append("IndexBox", flags, None, _generated(n, random.Random(n)))
        imap.select("IndexBox")
        typ, data = imap.uid("FETCH", "1:*", "(FLAGS)")
        assert typ == "OK"
        lines = [d for d in data if isinstance(d, bytes)]
        assert len(lines) == 40
        # Appended before this SELECT: recent to this session, which claimed them (RFC 3501 2.3.2).
        assert lines[0] == b"1 (UID 1 FLAGS (\\Recent))" and lines[1] == b"2 (UID 2 FLAGS (\\Seen \\Recent))"
        typ, data = imap.uid("SEARCH", "UNSEEN")
        assert data[0] == b" ".join(b"%d" % u for u in range(1, 41, 4))
        typ, data = imap.uid("SEARCH", "SUBJECT", "hello")  # subjects cycle: n % 5 == 0
        assert data[0] == b" ".join(b"%d" % (n + 1) for n in range(0, 40, 5))
        typ, data = imap.search(None, "OR", "SUBJECT", '"second 7"', "LARGER", "100000")
        assert data[0] == b"8"
        imap.uid("STORE", "3", "+FLAGS", "(\\Flagged)")
        typ, data = imap.uid("SEARCH", "FLAGGED")
        assert data[0] == b"3"
        imap.store("1:5", "+FLAGS", "(\\Deleted)")
        imap.expunge()
        typ, data = imap.fetch("1:2", "(UID FLAGS RFC822.SIZE)")
        first = data[0]
        assert isinstance(first, bytes) and first.startswith(b"1 (UID 6 FLAGS (\\Seen \\Recent) RFC822.SIZE ")
    finally:
        imap.logout()


@trio_test
async def test_index_fetch_lines_for_whole_and_partial_ranges_on_the_fake_store() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        for n in range(12):
            data = _generated(n, random.Random(n))
            flags = "\\Seen" if n % 2 else ""
            await c.command(f"APPEND INBOX ({flags}) {{{len(data)}+}}\r\n".encode() + data)
        async with connected(ports[0]) as first:
            # Another session selects first and takes \Recent (RFC 3501 2.3.2), so this one
            # sees stored flags only and UID FETCH 1:* takes the one-range fast path.
            await first.login()
            await first.command("SELECT INBOX")
            await first.command("LOGOUT")
        await c.command("SELECT INBOX")
        await c.command("UID STORE 4 +FLAGS (\\Flagged)")

        def flag_list(uid: int) -> bytes:
            names = [b"\\Seen"] if uid % 2 == 0 else []
            if uid == 4:
                names.insert(0, b"\\Flagged")
            return b"(" + b" ".join(names) + b")"

        whole = await c.command("UID FETCH 1:* (FLAGS)")  # the one-range fast path
        assert whole[:-1] == [b"* %d FETCH (UID %d FLAGS %s)\r\n" % (u, u, flag_list(u)) for u in range(1, 13)]
        part = await c.command("UID FETCH 5:9 (FLAGS)")  # a range that starts inside the mailbox
        assert part[:-1] == [b"* %d FETCH (UID %d FLAGS %s)\r\n" % (u, u, flag_list(u)) for u in range(5, 10)]
        plain = await c.command("FETCH 2,7 (FLAGS RFC822.SIZE)")  # the general renderer
        assert [line.split(b" RFC822.SIZE")[0] for line in plain[:-1]] == [
            b"* 2 FETCH (FLAGS %s" % flag_list(2),
            b"* 7 FETCH (FLAGS %s" % flag_list(7),
        ]


@trio_test
async def test_flag_only_searches_number_the_rows_like_the_map_with_gaps_and_pending_expunges() -> None:
    """SEARCH on flags only takes the store's rows as they come (no set, no sort) and numbers
    them by one walk along the map, or by arithmetic when the map has no gap: every answer
    checked against the flags the test set, before and after EXPUNGE leaves gaps, and with an
    expunge another session made that this one may not announce yet."""
    async with running_server() as (_, ports, _store), connected(ports[0]) as c, connected(ports[0]) as other:
        await c.login()
        await other.login()
        flags_of: dict[int, set[str]] = {}
        for n in range(1, 41):
            held = {"\\Seen"} if n % 3 else set()
            if n % 5 == 0:
                held.add("$Work")
            flags_of[n] = held
            data = _generated(n, random.Random(n))
            await c.command(f"APPEND INBOX ({' '.join(sorted(held))}) {{{len(data)}+}}\r\n".encode() + data)

        def expected(seqs: bool, test: Callable[[set[str]], bool], uids: list[int], gone: int = 0) -> bytes:
            chosen = [u for u in uids if test(flags_of[u]) and u != gone]
            numbers = [uids.index(u) + 1 for u in chosen] if seqs else chosen
            return b"* SEARCH" + b"".join(b" %d" % n for n in numbers) + b"\r\n"

        keys: dict[str, Callable[[set[str]], bool]] = {
            "SEEN": lambda f: "\\Seen" in f,
            "UNSEEN": lambda f: "\\Seen" not in f,
            "SEEN KEYWORD $Work": lambda f: "\\Seen" in f and "$Work" in f,
            "UNKEYWORD $work UNSEEN": lambda f: "$Work" not in f and "\\Seen" not in f,
            "NOT SEEN": lambda f: "\\Seen" not in f,  # not flag tests only: evaluated row by row
        }

        async def check(uids: list[int]) -> None:
            for key, test in keys.items():
                for prefix, seqs in (("UID ", False), ("", True)):
                    answer = await c.command(f"{prefix}SEARCH {key}")
                    assert answer[0] == expected(seqs, test, uids), (prefix, key)

        await c.command("SELECT INBOX")
        await check(list(range(1, 41)))  # a map without gaps
        await c.command("STORE 4,9,10,11,30 +FLAGS.SILENT (\\Deleted)")
        await c.command("EXPUNGE")
        left = [u for u in range(1, 41) if u not in (4, 9, 10, 11, 30)]
        await check(left)  # gaps: the walk along the map
        await other.command("SELECT INBOX")
        await other.command("UID STORE 12 +FLAGS.SILENT (\\Deleted)")
        await other.command("UID EXPUNGE 12")
        await trio.sleep(0.3)  # c hears of it but may not announce it during SEARCH (RFC 3501 7.4.1)
        for key, test in keys.items():
            answer = await c.command(f"SEARCH {key}")  # numbered in c's map, which still holds 12
            assert answer[0] == expected(True, test, left, gone=12), key
        assert (await c.command("NOOP"))[0] == b"* 8 EXPUNGE\r\n"  # it was still in c's map


@trio_test
async def test_index_fetch_read_in_pieces_gives_every_line_once_in_order() -> None:
    """FETCH from the index reads the asked messages in growing pieces (the first bytes leave
    before the rest is read). Over 5 messages, pieces of 3, 9 and at most 10 here, over a map with gaps, a
    keyword, \\Recent and CHANGEDSINCE: the same lines as one read would give."""
    saved = index_queries.ONE_READ_UPTO, index_queries.FIRST_PIECE, index_queries.PIECE_GROWTH, index_queries.MAX_PIECE
    index_queries.ONE_READ_UPTO, index_queries.FIRST_PIECE, index_queries.PIECE_GROWTH = 5, 3, 3
    index_queries.MAX_PIECE = 10
    reads: list[str] = []
    try:
        async with running_server() as (_, ports, store), connected(ports[0]) as c:
            assert isinstance(store, FakeStore)
            scan = store.scan_index

            def counted(user: str, mailbox_id: int, query: IndexQuery) -> AsyncGenerator[IndexColumns, None]:
                reads.append(query.uid_set)
                return scan(user, mailbox_id, query)

            store.scan_index = counted  # type: ignore[method-assign]
            for i in range(40):
                body = b"Subject: m%d\r\n\r\nbody\r\n" % i
                await store.multi_append("alice", "INBOX", [(AppendSpec(flags=("\\Seen",) if i % 3 else ()), body)])
            inbox = (await store.select("alice", "INBOX")).mailbox.mailbox_id
            await store.store_flags("alice", inbox, "10:12,30", FlagMode.ADD, ["\\Deleted"])
            await store.expunge("alice", inbox, "10:12,30")
            await store.store_flags("alice", inbox, "35", FlagMode.ADD, ["$Late"])
            await c.login()
            await c.command("ENABLE CONDSTORE")
            await c.command("SELECT INBOX")
            uids = [u for u in range(1, 41) if u not in (10, 11, 12, 30)]

            def flags_of(uid: int) -> bytes:
                names = (["$Late"] if uid == 35 else []) + (["\\Seen"] if (uid - 1) % 3 else []) + ["\\Recent"]
                return " ".join(names).encode()

            reads.clear()
            lines = await c.command("UID FETCH 1:* (FLAGS)")
            fetches = [line for line in lines if line.startswith(b"* ") and b" FETCH (" in line]
            assert [re.sub(rb" MODSEQ \(\d+\)", b"", line) for line in fetches] == [
                b"* %d FETCH (UID %d FLAGS (%s))\r\n" % (seq, uid, flags_of(uid)) for seq, uid in enumerate(uids, 1)
            ]
            assert len(reads) == 5  # 3 + 9 + 10 + 10 + 4 messages
            reads.clear()
            await c.command("UID FETCH 1:5 (FLAGS)")
            assert reads == ["1:5"]  # up to ONE_READ_UPTO: one read

            reads.clear()
            modseq_of_35 = int((await c.command("UID FETCH 35 (MODSEQ)"))[0].split(b"MODSEQ (")[1].split(b")")[0])
            lines = await c.command(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq_of_35 - 1})".encode())
            assert [line.split(b" FLAGS")[0] for line in lines if line.startswith(b"* ") and b" FETCH (" in line] == [
                b"* %d FETCH (UID 35" % (uids.index(35) + 1)
            ]
    finally:
        (
            index_queries.ONE_READ_UPTO,
            index_queries.FIRST_PIECE,
            index_queries.PIECE_GROWTH,
            index_queries.MAX_PIECE,
        ) = saved
