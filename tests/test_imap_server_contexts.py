"""CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267) on the wire: RETURN (UPDATE) contexts
reporting ADDTO/REMOVEFROM as this and other sessions change the mailbox,
CANCELUPDATE, PARTIAL, the NOUPDATE limit (in-process server on the fake store)."""

from __future__ import annotations

from imapd.session.update_contexts import MAX_CONTEXTS
from tests.imap_server_wire import RawClient, connected, running_server, trio_test


def _msg(n: int, subject: str) -> bytes:
    return f"From: a{n}@example.org\r\nSubject: {subject}\r\nMessage-ID: <c{n}@x>\r\n\r\nbody {n}\r\n".encode()


async def _append(client: RawClient, n: int, subject: str, flags: str = "") -> list[bytes]:
    data = _msg(n, subject)
    lines = await client.command(f"APPEND INBOX ({flags}) {{{len(data)}+}}\r\n".encode() + data)
    assert b" OK " in lines[-1], lines
    return lines


async def _fill(client: RawClient) -> None:
    # subjects sort as: apple(3) cherry(1) kiwi(4) melon(2)
    for n, (subject, flags) in enumerate((("cherry", "$Junk"), ("melon", ""), ("apple", "$Junk"), ("kiwi", "")), 1):
        await _append(client, n, subject, flags)
    assert b" OK " in (await client.command("SELECT INBOX"))[-1]


def _esearch(lines: list[bytes], tag: bytes = b"") -> list[bytes]:
    """The ESEARCH lines, with the correlator of `tag` (the context's command) shown as T."""
    found = [x.rstrip(b"\r\n") for x in lines if x.startswith(b"* ESEARCH")]
    return [x.replace(b'(TAG "' + tag + b'")', b"(TAG T)") for x in found] if tag else found


def _tag(lines: list[bytes]) -> bytes:
    return lines[-1].split(b" ", 1)[0]


def _index(lines: list[bytes], prefix: bytes) -> int:
    return next(i for i, x in enumerate(lines) if x.startswith(prefix))


@trio_test
async def test_search_context_follows_own_and_other_sessions_changes() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as a, connected(ports[0]) as b:
        await a.login()
        await b.login()
        caps = b"".join(await a.command("CAPABILITY"))
        assert b" CONTEXT=SEARCH " in caps and b" CONTEXT=SORT " in caps
        await _fill(a)
        assert b" OK " in (await b.command("SELECT INBOX"))[-1]
        lines = await a.command("UID SEARCH RETURN (UPDATE COUNT) KEYWORD $Junk")
        tag = _tag(lines)
        assert _esearch(lines, tag) == [b"* ESEARCH (TAG T) UID COUNT 2"], lines
        # This session's own STORE: the update comes with the command's responses.
        lines = await a.command("STORE 2 +FLAGS ($Junk)")
        assert _esearch(lines, tag) == [b"* ESEARCH (TAG T) UID ADDTO (0 2)"], lines
        lines = await a.command("UID STORE 1 -FLAGS.SILENT ($Junk)")
        assert _esearch(lines, tag) == [b"* ESEARCH (TAG T) UID REMOVEFROM (0 1)"], lines
        # Other changes no matching message: no update.
        assert _esearch(await a.command("STORE 4 +FLAGS (\\Seen)")) == []
        # Another session delivers a match: EXISTS first, then ADDTO.
        await _append(b, 5, "fig", "$Junk")
        lines = await a.command("NOOP")
        assert _esearch(lines, tag) == [b"* ESEARCH (TAG T) UID ADDTO (0 5)"], lines
        assert _index(lines, b"* 5 EXISTS") < _index(lines, b"* ESEARCH"), lines
        # ... flags one, and expunges another: REMOVEFROM before the EXPUNGE.
        await b.command("STORE 4 +FLAGS.SILENT ($Junk)")
        await b.command("STORE 3 +FLAGS.SILENT (\\Deleted)")
        await b.command("EXPUNGE")
        lines = await a.command("NOOP")
        updates = _esearch(lines, tag)
        assert updates == [b"* ESEARCH (TAG T) UID REMOVEFROM (0 3)", b"* ESEARCH (TAG T) UID ADDTO (0 4)"], lines
        removal = b'* ESEARCH (TAG "' + tag + b'") UID REMOVEFROM'
        assert _index(lines, removal) < _index(lines, b"* 3 EXPUNGE"), lines
        lines = await a.command("UID SEARCH RETURN (ALL) KEYWORD $Junk")
        assert _esearch(lines, _tag(lines)) == [b"* ESEARCH (TAG T) UID ALL 2,4:5"]


@trio_test
async def test_sequence_number_context_and_expunge_order() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as a:
        await a.login()
        await _fill(a)
        tag = _tag(await a.command("SEARCH RETURN (UPDATE) UNKEYWORD $Junk"))
        await a.command("STORE 1 +FLAGS.SILENT (\\Deleted)")
        lines = await a.command("EXPUNGE")
        # 1 was not a match: sequence numbers shift but the context needs no update.
        assert _esearch(lines) == [] and b"* 1 EXPUNGE\r\n" in lines
        await a.command("STORE 1 +FLAGS.SILENT (\\Deleted)")  # was message 2 ("melon"), a match
        lines = await a.command("EXPUNGE")
        assert _esearch(lines, tag) == [b"* ESEARCH (TAG T) REMOVEFROM (0 1)"], lines
        assert _index(lines, b"* ESEARCH") < _index(lines, b"* 1 EXPUNGE"), lines
        lines = await _append(a, 6, "plum")  # this session's own APPEND: updates before its OK
        assert _esearch(lines, tag) == [b"* ESEARCH (TAG T) ADDTO (0 3)"], lines
        assert _index(lines, b"* 3 EXISTS") < _index(lines, b"* ESEARCH"), lines


@trio_test
async def test_sort_context_reports_positions() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as a, connected(ports[0]) as b:
        await a.login()
        await b.login()
        await _fill(a)
        lines = await a.command("UID SORT RETURN (UPDATE ALL) (SUBJECT) UTF-8 ALL")
        tag = _tag(lines)
        assert _esearch(lines, tag) == [b"* ESEARCH (TAG T) UID ALL 3,1,4,2"], lines
        await _append(b, 5, "banana")  # between apple and cherry: position 2
        await _append(b, 6, "zucchini")  # last: position 6
        lines = await a.command("NOOP")
        assert _esearch(lines, tag) == [b"* ESEARCH (TAG T) UID ADDTO (2 5 6 6)"], lines
        await _append(b, 7, "date")  # after cherry (position 3): position 4
        await _append(b, 8, "elder")  # right after it: position 5, one pair
        lines = await a.command("NOOP")
        assert _esearch(lines, tag) == [b"* ESEARCH (TAG T) UID ADDTO (4 7:8)"], lines
        # apple(3) goes from position 1, cherry(1) from 2 once apple is gone, kiwi(4) from 4.
        await a.command("UID STORE 1,3,4 +FLAGS.SILENT (\\Deleted)")
        lines = await a.command("UID EXPUNGE 1,3,4")
        assert _esearch(lines, tag) == [b"* ESEARCH (TAG T) UID REMOVEFROM (1 3 2 1 4 4)"], lines
        lines = await a.command("UID SORT RETURN (ALL) (SUBJECT) UTF-8 ALL")
        assert _esearch(lines, _tag(lines)) == [b"* ESEARCH (TAG T) UID ALL 5,7:8,2,6"]


@trio_test
async def test_cancelupdate_tag_reuse_and_limit() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as a:
        await a.login()
        await _fill(a)
        await a.send(b"U1 SEARCH RETURN (UPDATE) KEYWORD $Junk\r\n")
        assert b"U1 OK" in (await a.until_tagged("U1"))[-1]
        await a.send(b"U1 SORT RETURN (UPDATE) (DATE) UTF-8 ALL\r\n")
        assert (await a.until_tagged("U1"))[-1].startswith(b"U1 BAD"), "the tag of a live context"
        await a.send(b"U2 UID SORT RETURN (UPDATE COUNT) (SUBJECT) UTF-8 KEYWORD $Junk\r\n")
        assert b"U2 OK" in (await a.until_tagged("U2"))[-1]
        lines = await a.command("STORE 2 +FLAGS.SILENT ($Junk)")
        assert _esearch(lines) == [b'* ESEARCH (TAG "U1") ADDTO (0 2)', b'* ESEARCH (TAG "U2") UID ADDTO (3 2)'], lines
        assert b" NO " in (await a.command('CANCELUPDATE "U1" "U9"'))[-1]  # unknown tag: nothing cancelled
        assert b" BAD " in (await a.command("CANCELUPDATE"))[-1]
        assert b" BAD " in (await a.command("CANCELUPDATE U1"))[-1]  # tags are quoted strings
        assert b" OK " in (await a.command('CANCELUPDATE "U1"'))[-1]
        lines = await a.command("STORE 4 +FLAGS.SILENT ($Junk)")
        assert _esearch(lines) == [b'* ESEARCH (TAG "U2") UID ADDTO (3 4)'], lines
        await a.send(b"U1 SEARCH RETURN (UPDATE) ALL\r\n")  # the tag is free again
        assert b"U1 OK" in (await a.until_tagged("U1"))[-1]
        # The limit: one more than it allows is refused with NO [NOUPDATE], the search still answers.
        for i in range(MAX_CONTEXTS - 2):
            await a.send(b"L%d SEARCH RETURN (UPDATE) ALL\r\n" % i)
            assert b"OK" in (await a.until_tagged(f"L{i}"))[-1]
        await a.send(b"X1 SEARCH RETURN (UPDATE COUNT) ALL\r\n")
        lines = await a.until_tagged("X1")
        assert b'* NO [NOUPDATE "X1"]' in b"".join(lines) and b"COUNT 4" in b"".join(lines), lines
        assert lines[-1].startswith(b"X1 OK")
        # Leaving the mailbox ends every context.
        assert b" OK " in (await a.command("SELECT INBOX"))[-1]
        assert b" NO " in (await a.command('CANCELUPDATE "U2"'))[-1]
        lines = await a.command("STORE 1 -FLAGS.SILENT ($Junk)")
        assert _esearch(lines) == [], lines


@trio_test
async def test_partial_windows() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as a:
        await a.login()
        await _fill(a)
        lines = await a.command("SEARCH RETURN (PARTIAL 2:3) ALL")
        assert _esearch(lines, _tag(lines)) == [b"* ESEARCH (TAG T) PARTIAL (2:3 2:3)"], lines
        lines = await a.command("UID SEARCH RETURN (COUNT PARTIAL 5:3 MIN) ALL")
        assert _esearch(lines, _tag(lines)) == [b"* ESEARCH (TAG T) UID MIN 1 PARTIAL (3:5 3:4) COUNT 4"], lines
        lines = await a.command("SEARCH RETURN (PARTIAL 10:20) ALL")
        assert _esearch(lines, _tag(lines)) == [b"* ESEARCH (TAG T) PARTIAL (10:20 NIL)"], lines
        lines = await a.command("UID SORT RETURN (PARTIAL 1:3) (SUBJECT) UTF-8 ALL")
        assert _esearch(lines, _tag(lines)) == [b"* ESEARCH (TAG T) UID PARTIAL (1:3 3,1,4)"], lines
        lines = await a.command("SEARCH RETURN (CONTEXT) ALL")
        assert _esearch(lines, _tag(lines)) == [b"* ESEARCH (TAG T) ALL 1:4"], lines
        for bad in ("ALL PARTIAL 1:2", "PARTIAL 1:2 PARTIAL 3:4", "PARTIAL 0:2", "PARTIAL 1:*", "PARTIAL"):
            assert b" BAD " in (await a.command(f"SEARCH RETURN ({bad}) ALL"))[-1], bad


@trio_test
async def test_idle_pushes_context_updates() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as a, connected(ports[0]) as b:
        await a.login()
        await b.login()
        await _fill(a)
        tag = _tag(await a.command("UID SEARCH RETURN (UPDATE) SUBJECT fig"))
        await a.send(b"I1 IDLE\r\n")
        assert (await a.read_line()).startswith(b"+ ")
        await _append(b, 5, "fig")
        seen: list[bytes] = []
        while not any(x.startswith(b"* ESEARCH") for x in seen):
            seen.append(await a.read_line())
        assert _esearch(seen, tag) == [b"* ESEARCH (TAG T) UID ADDTO (0 5)"], seen
        await a.send(b"DONE\r\n")
        assert (await a.until_tagged("I1"))[-1].startswith(b"I1 OK")


def _apply(result: set[int], lines: list[bytes], tag: bytes) -> None:
    """A client keeping a UID SEARCH context: apply its ADDTO/REMOVEFROM (position 0) updates."""
    for line in _esearch(lines, tag):
        if b"(TAG T) UID " not in line:
            continue  # another context's update
        words = line.split(b"(TAG T) UID ", 1)[1].replace(b"(", b"").replace(b")", b"").split()
        for i in range(0, len(words), 3):
            kind, _zero, numbers = words[i : i + 3]
            for part in numbers.split(b","):
                lo, _, hi = part.partition(b":")
                uids = set(range(int(lo), int(hi or lo) + 1))
                result.update(uids) if kind == b"ADDTO" else result.difference_update(uids)


@trio_test
async def test_kept_results_equal_a_fresh_search() -> None:
    """Programs decided from the reported flags alone and programs that need the store: after a
    mix of this and another session's changes, the updated result is what a new search finds."""
    programs = ("OR FLAGGED NOT SEEN", "KEYWORD $Junk NOT UID 3", "DELETED 2:*", "SUBJECT melon", "NOT ANSWERED")
    async with running_server() as (_, ports, _store), connected(ports[0]) as a, connected(ports[0]) as b:
        await a.login()
        await b.login()
        await _fill(a)
        await b.command("SELECT INBOX")
        kept: dict[bytes, tuple[str, set[int]]] = {}
        for program in programs:
            lines = await a.command(f"UID SEARCH RETURN (UPDATE ALL) {program}")
            found = _esearch(lines, _tag(lines))
            uids: set[int] = set()
            if found and b" ALL " in found[0]:
                for part in found[0].split(b" ALL ")[1].split(b","):
                    lo, _, hi = part.partition(b":")
                    uids.update(range(int(lo), int(hi or lo) + 1))
            kept[_tag(lines)] = (program, uids)
        steps = [
            (b, "STORE 1 +FLAGS (\\Seen)"),
            (a, "STORE 2 +FLAGS (\\Flagged \\Answered)"),
            (b, "STORE 3 -FLAGS ($Junk)"),
            (b, "STORE 2:4 +FLAGS (\\Deleted)"),
            (a, "STORE 3 -FLAGS (\\Deleted)"),
            (b, "STORE 1:* +FLAGS ($Junk)"),
            (b, "STORE 2 -FLAGS (\\Deleted)"),
        ]
        for client, command in steps:
            lines = await client.command(command)
            lines += await a.command("NOOP")
            for tag, (_, result) in kept.items():
                _apply(result, lines, tag)
        await _append(b, 6, "melon", "$Junk")
        lines = await a.command("NOOP")
        for tag, (_, result) in kept.items():
            _apply(result, lines, tag)
        for program, result in kept.values():
            fresh = await a.command(f"UID SEARCH {program}")
            numbers = {int(x) for x in fresh[0].split()[2:]}
            assert result == numbers, (program, result, numbers)
