"""PREVIEW / SNIPPET and SAVEDATE on the wire (in-process server on the fake
store): the grammar, BAD for what the RFCs do not allow, and the answers."""

from __future__ import annotations

from tests.imap_server_wire import RawClient, connected, running_server, trio_test

MESSAGE = b"Subject: x\r\n\r\nfirst line\r\n> quoted\r\nsecond\r\n"


async def _one(c: RawClient) -> None:
    lines = await c.command(f'APPEND INBOX () "01-Jan-2020 10:00:00 +0000" {{{len(MESSAGE)}+}}\r\n'.encode() + MESSAGE)
    assert b"OK" in lines[-1], lines
    assert b"OK" in (await c.command("SELECT INBOX"))[-1]


@trio_test
async def test_preview_forms_and_errors() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        await _one(c)
        assert (await c.command("FETCH 1 (PREVIEW)"))[0] == b'* 1 FETCH (PREVIEW "first line second")\r\n'
        assert (await c.command("FETCH 1 (PREVIEW (lazy) UID)"))[0] == (
            b'* 1 FETCH (PREVIEW "first line second" UID 1)\r\n'
        )
        assert (await c.command("UID FETCH 1 (SNIPPET (FUZZY))"))[0] == (
            b'* 1 FETCH (UID 1 SNIPPET (FUZZY "first line second"))\r\n'
        )
        assert (await c.command("FETCH 1 PREVIEW"))[0] == b'* 1 FETCH (PREVIEW "first line second")\r\n'
        assert (await c.command("FETCH 1 (SNIPPET)"))[0] == b'* 1 FETCH (SNIPPET (FUZZY "first line second"))\r\n'
        for bad in ("FETCH 1 (PREVIEW (FOO))", "FETCH 1 (PREVIEW ())", "FETCH 1 PREVIEW[]"):
            assert (await c.command(bad))[-1].split()[1] == b"BAD", bad


@trio_test
async def test_savedate_fetch_and_search_keys() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        await _one(c)
        line = (await c.command("FETCH 1 (SAVEDATE INTERNALDATE)"))[0]
        assert line.startswith(b'* 1 FETCH (SAVEDATE "') and b'INTERNALDATE " 1-Jan-2020 10:00:00 +0000"' in line
        assert b"2020" not in line.split(b"INTERNALDATE")[0]  # saved now, not at the internal date
        assert (await c.command("SEARCH SAVEDATESUPPORTED"))[0] == b"* SEARCH 1\r\n"
        assert (await c.command("SEARCH SAVEDSINCE 1-Jan-2021"))[0] == b"* SEARCH 1\r\n"
        assert (await c.command("SEARCH SAVEDBEFORE 1-Jan-2021"))[0] == b"* SEARCH\r\n"
        assert (await c.command("SEARCH OR SAVEDON 1-Jan-2020 BEFORE 1-Jan-2021"))[0] == b"* SEARCH 1\r\n"
        assert (await c.command("SEARCH SAVEDSINCE x"))[-1].split()[1] == b"BAD"
