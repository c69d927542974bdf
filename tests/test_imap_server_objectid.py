"""OBJECTID (RFC 8474) on the wire, following the RFC's examples (in-process
server on the fake store): MAILBOXID on CREATE, SELECT and STATUS, kept by
RENAME and new after DELETE + CREATE; EMAILID kept by COPY and MOVE; THREADID
NIL (no thread ids kept, RFC 8474 5.2); SEARCH EMAILID / THREADID."""

from __future__ import annotations

import re

from tests.imap_server_wire import RawClient, connected, running_server, trio_test

MESSAGE = b"Subject: Hello\r\nMessage-ID: <hello@example.org>\r\n\r\nhello\r\n"
_ID = rb"([A-Za-z0-9_-]{1,255})"


def _mailbox_id(line: bytes) -> bytes:
    m = re.search(rb"\[MAILBOXID \(" + _ID + rb"\)\]", line)
    assert m is not None, line
    return m.group(1)


async def _status_id(c: RawClient, name: str) -> bytes:
    lines = await c.command(f"STATUS {name} (MAILBOXID)")
    m = re.match(rb"\* STATUS \S+ \(MAILBOXID \(" + _ID + rb"\)\)\r\n$", lines[0])
    assert m is not None and b"OK" in lines[-1], lines
    return m.group(1)


@trio_test
async def test_mailboxid_on_create_select_status_rename_delete() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        assert b" OBJECTID " in b"".join(await c.command("CAPABILITY"))
        foo = _mailbox_id((await c.command("CREATE foo"))[-1])
        bar = _mailbox_id((await c.command("CREATE bar"))[-1])
        assert foo != bar
        assert b"[ALREADYEXISTS]" in (await c.command("CREATE foo"))[-1]
        selected = await c.command("SELECT foo")
        assert [_mailbox_id(line) for line in selected if b"MAILBOXID" in line] == [foo]
        assert await _status_id(c, "foo") == foo
        await c.command("SELECT INBOX")  # imapd ends a session whose selected mailbox is renamed
        assert b"OK" in (await c.command("RENAME foo renamed"))[-1]
        assert await _status_id(c, "renamed") == foo  # RFC 8474 4.3: RENAME keeps the id
        assert await _status_id(c, "bar") == bar
        assert b"OK" in (await c.command("DELETE bar"))[-1]
        again = _mailbox_id((await c.command("CREATE bar"))[-1])
        assert again not in (foo, bar)  # a new mailbox, a new id
        listed = await c.command('LIST "" "renamed" RETURN (STATUS (MAILBOXID MESSAGES))')
        assert b'* STATUS "renamed" (MAILBOXID (' + foo + b") MESSAGES 0)\r\n" in listed


@trio_test
async def test_emailid_kept_by_copy_and_move_threadid_nil_and_search() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        lines = await c.command(f"APPEND INBOX {{{len(MESSAGE)}+}}\r\n".encode() + MESSAGE)
        assert b"OK" in lines[-1]
        assert b"OK" in (await c.command(f"APPEND INBOX {{{len(MESSAGE)}+}}\r\n".encode() + MESSAGE))[-1]
        await c.command("CREATE foo")
        await c.command("CREATE moved")
        await c.command("SELECT INBOX")
        first = (await c.command("FETCH 1 (EMAILID THREADID)"))[0]
        m = re.match(rb"\* 1 FETCH \(EMAILID \(" + _ID + rb"\) THREADID NIL\)\r\n$", first)
        assert m is not None, first
        email_id = m.group(1)
        other = (await c.command("FETCH 2 (EMAILID)"))[0]
        assert email_id not in other  # the same bytes appended twice are two emails
        assert (await c.command(f"SEARCH EMAILID {email_id.decode()}"))[0] == b"* SEARCH 1\r\n"
        assert (await c.command("SEARCH THREADID T1"))[0] == b"* SEARCH\r\n"
        assert (await c.command("SEARCH NOT EMAILID Mnone"))[0] == b"* SEARCH 1 2\r\n"
        for bad in ("SEARCH EMAILID", "SEARCH EMAILID a.b", "SEARCH EMAILID " + "x" * 256):
            assert (await c.command(bad))[-1].split()[1] == b"BAD", bad
        assert b"OK" in (await c.command("COPY 1 foo"))[-1]
        assert b"OK" in (await c.command("MOVE 1 moved"))[-1]
        for name in ("foo", "moved"):
            await c.command(f"SELECT {name}")
            got = (await c.command("FETCH 1 (EMAILID)"))[0]
            assert got == b"* 1 FETCH (EMAILID (" + email_id + b"))\r\n", (name, got)
