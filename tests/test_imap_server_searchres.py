"""SEARCHRES (RFC 5182) on the wire: RETURN (SAVE), "$" in FETCH/STORE/COPY/MOVE/
SEARCH and the UID variants, the reset on SELECT, after a failed SAVE and as
messages are expunged (in-process server on the fake store, loopback sockets)."""

from __future__ import annotations

from tests.imap_server_wire import RawClient, connected, running_server, trio_test


def _msg(n: int, subject: str) -> bytes:
    return f"From: a{n}@example.org\r\nSubject: {subject}\r\nMessage-ID: <r{n}@x>\r\n\r\nbody {n}\r\n".encode()


async def _fill(client: RawClient, subjects: tuple[str, ...] = ("keep", "drop", "keep", "other", "keep")) -> None:
    for n, subject in enumerate(subjects, 1):
        data = _msg(n, subject)
        lines = await client.command(f"APPEND INBOX {{{len(data)}+}}\r\n".encode() + data)
        assert b"OK" in lines[-1], lines
    assert b"OK" in (await client.command("SELECT INBOX"))[-1]


def _search(lines: list[bytes]) -> bytes:
    found = [line.rstrip(b"\r\n") for line in lines if line.startswith(b"* SEARCH")]
    assert len(found) == 1 and b" OK " in lines[-1], lines
    return found[0]


def _ok_no_untagged(lines: list[bytes], name: bytes) -> None:
    assert b" OK " in lines[-1], lines
    assert not [x for x in lines if x.startswith(b"* " + name)], lines


@trio_test
async def test_save_then_dollar_in_fetch_store_search_and_uid_variants() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        caps = b"".join(await c.command("CAPABILITY"))
        assert b" SEARCHRES " in caps
        await _fill(c)
        # SAVE alone: no ESEARCH, no SEARCH (RFC 5182 2.4).
        _ok_no_untagged(await c.command("SEARCH RETURN (SAVE) SUBJECT keep"), b"ESEARCH")
        lines = await c.command("FETCH $ (UID)")
        assert [x for x in lines if x.startswith(b"* ") and b"FETCH" in x] == [
            b"* 1 FETCH (UID 1)\r\n",
            b"* 3 FETCH (UID 3)\r\n",
            b"* 5 FETCH (UID 5)\r\n",
        ]
        lines = await c.command("UID FETCH $ (FLAGS)")
        assert len([x for x in lines if x.startswith(b"* ") and b"FETCH" in x]) == 3 and b" OK " in lines[-1]
        lines = await c.command("STORE $ +FLAGS (\\Flagged)")
        assert len([x for x in lines if b"\\Flagged" in x]) == 3
        assert _search(await c.command("SEARCH FLAGGED")) == b"* SEARCH 1 3 5"
        assert _search(await c.command("SEARCH $ NOT UID 3")) == b"* SEARCH 1 5"
        assert _search(await c.command("UID SEARCH UID $")) == b"* SEARCH 1 3 5"
        assert _search(await c.command("SEARCH OR $ SUBJECT other")) == b"* SEARCH 1 3 4 5"
        # SAVE together with ESEARCH output; "$" in the same command is the previous result.
        lines = await c.command("UID SEARCH RETURN (SAVE ALL) $ UID 3:*")
        assert next(x for x in lines if x.startswith(b"* ESEARCH")).endswith(b" UID ALL 3,5\r\n"), lines
        assert _search(await c.command("SEARCH $")) == b"* SEARCH 3 5"


@trio_test
async def test_save_with_min_max_keeps_only_those() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        await _fill(c)
        lines = await c.command("SEARCH RETURN (MIN SAVE) SUBJECT keep")
        assert next(x for x in lines if x.startswith(b"* ESEARCH")).endswith(b" MIN 1\r\n"), lines
        assert _search(await c.command("SEARCH $")) == b"* SEARCH 1"
        _ok_no_untagged(await c.command("SEARCH RETURN (SAVE MAX MIN) SUBJECT keep"), b"SEARCH ")
        assert _search(await c.command("SEARCH $")) == b"* SEARCH 1 5"
        await c.command("SEARCH RETURN (MAX COUNT SAVE) SUBJECT keep")
        assert _search(await c.command("SEARCH $")) == b"* SEARCH 1 3 5"
        # SORT: MIN/MAX are the first/last in sort order (RFC 5267), so are the saved ones.
        await c.command("SORT RETURN (SAVE MIN) (REVERSE SUBJECT) UTF-8 ALL")
        assert _search(await c.command("SEARCH $")) == b"* SEARCH 4"
        await c.command("SORT RETURN (MAX SAVE) (REVERSE SUBJECT) UTF-8 ALL")
        assert _search(await c.command("SEARCH $")) == b"* SEARCH 2"


@trio_test
async def test_copy_move_and_expunge_adjust_the_saved_result() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        await _fill(c)
        await c.command("SEARCH RETURN (SAVE) SUBJECT keep")
        lines = await c.command("COPY $ Archive")
        assert b"[COPYUID " in lines[-1] and b" 1,3,5 " in lines[-1], lines
        # Expunging message 3 takes it out of "$"; the others keep being found by UID.
        await c.command("STORE 3 +FLAGS.SILENT (\\Deleted)")
        assert b"* 3 EXPUNGE\r\n" in await c.command("EXPUNGE")
        assert _search(await c.command("UID SEARCH $")) == b"* SEARCH 1 5"
        assert _search(await c.command("SEARCH $")) == b"* SEARCH 1 4"
        lines = await c.command("UID MOVE $ Trash")
        assert b"OK" in lines[-1] and b"* 4 EXPUNGE\r\n" in lines and b"* 1 EXPUNGE\r\n" in lines, lines
        assert _search(await c.command("SEARCH $")) == b"* SEARCH"
        assert _search(await c.command("SEARCH ALL")) == b"* SEARCH 1 2"
        lines = await c.command("STATUS Archive (MESSAGES)")
        assert b"MESSAGES 3" in lines[0]
        # An empty "$" is not an error: nothing is addressed.
        assert b" OK " in (await c.command("FETCH $ FLAGS"))[-1]
        assert b" OK " in (await c.command("UID EXPUNGE $"))[-1]


@trio_test
async def test_reset_on_select_and_after_a_failed_save() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        await _fill(c)
        await c.command("SEARCH RETURN (SAVE) SUBJECT keep")
        assert _search(await c.command("SEARCH $")) == b"* SEARCH 1 3 5"
        assert b" OK " in (await c.command("EXAMINE INBOX"))[-1]
        assert _search(await c.command("SEARCH $")) == b"* SEARCH"
        assert b" OK " in (await c.command("SELECT INBOX"))[-1]
        await c.command("SEARCH RETURN (SAVE) SUBJECT keep")
        # NO to a SAVE (unknown charset) empties "$" (RFC 5182 2.1) ...
        lines = await c.command("SEARCH RETURN (SAVE) CHARSET X-NOPE SUBJECT keep")
        assert b"NO [BADCHARSET" in lines[-1], lines
        assert _search(await c.command("SEARCH $")) == b"* SEARCH"
        await c.command("UID SORT RETURN (SAVE) (ARRIVAL) UTF-8 SUBJECT keep")
        assert _search(await c.command("SEARCH $")) == b"* SEARCH 1 3 5"
        lines = await c.command("SORT RETURN (SAVE) (ARRIVAL) X-NOPE ALL")
        assert b"NO [BADCHARSET" in lines[-1], lines
        assert _search(await c.command("SEARCH $")) == b"* SEARCH"
        # ... a BAD one leaves it alone; a NO without SAVE too.
        await c.command("SEARCH RETURN (SAVE) SUBJECT keep")
        assert b" BAD " in (await c.command("SEARCH RETURN (SAVE) NOTAKEY"))[-1]
        assert b"NO [BADCHARSET" in (await c.command("SEARCH CHARSET X-NOPE ALL"))[-1]
        assert _search(await c.command("SEARCH $")) == b"* SEARCH 1 3 5"
        # "$" is a whole sequence set of its own.
        assert b" BAD " in (await c.command("FETCH $,1 FLAGS"))[-1]


@trio_test
async def test_other_sessions_expunge_leaves_saved_result_after_announcement() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as a, connected(ports[0]) as b:
        await a.login()
        await b.login()
        await _fill(a)
        assert b" OK " in (await b.command("SELECT INBOX"))[-1]
        await a.command("SEARCH RETURN (SAVE) SUBJECT keep")
        await b.command("STORE 1 +FLAGS.SILENT (\\Deleted)")
        await b.command("EXPUNGE")
        lines = await a.command("NOOP")
        assert b"* 1 EXPUNGE\r\n" in lines, lines
        assert _search(await a.command("SEARCH $")) == b"* SEARCH 2 4"
        assert _search(await a.command("UID SEARCH $")) == b"* SEARCH 3 5"
