"""IMAP4rev2 (RFC 9051) alongside IMAP4rev1: ENABLE IMAP4rev2 and the rev2 differences,
checked against the RFC's own examples (in-process server on the fake store).

rev1 sessions keep rev1 behaviour: the same server answers both in one run.
"""

from __future__ import annotations

from tests.imap_server_wire import RawClient, connected, running_server, trio_test


def _msg(n: int, subject: str, sender: str = "Jones") -> bytes:
    return f"From: {sender} <{sender.lower()}@example.org>\r\nSubject: {subject}\r\n\r\nbody {n}\r\n".encode()


async def _fill(c: RawClient) -> None:
    # 1: Smith, flagged; 2: Jones, flagged; 3: Jones; 4: Jones, flagged
    for n, (sender, flags) in enumerate(
        (("Smith", "\\Flagged"), ("Jones", "\\Flagged"), ("Jones", ""), ("Jones", "\\Flagged")), 1
    ):
        data = _msg(n, f"m{n}", sender)
        lines = await c.command(f"APPEND INBOX ({flags}) {{{len(data)}+}}\r\n".encode() + data)
        assert b" OK " in lines[-1], lines


def _untagged(lines: list[bytes]) -> list[bytes]:
    return [x.rstrip(b"\r\n") for x in lines if x.startswith(b"* ")]


@trio_test
async def test_enable_and_select_as_in_rfc_9051() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as rev2, connected(ports[0]) as rev1:
        await rev2.login()
        await rev1.login()
        caps = b"".join(await rev2.command("CAPABILITY"))
        assert b" IMAP4rev1 IMAP4rev2 " in caps
        await _fill(rev2)
        assert _untagged(await rev2.command("ENABLE IMAP4rev2")) == [b"* ENABLED IMAP4rev2"]
        # RFC 9051 6.3.2 example: EXISTS, FLAGS, PERMANENTFLAGS, UIDVALIDITY, UIDNEXT, LIST; no RECENT, no UNSEEN.
        lines = _untagged(await rev2.command("SELECT INBOX"))
        assert b"* 4 EXISTS" in lines and b'* LIST () "/" "INBOX"' in lines, lines
        assert not [x for x in lines if b"RECENT" in x or b"[UNSEEN" in x], lines
        assert any(x.startswith(b"* OK [UIDVALIDITY ") for x in lines) and any(b"[UIDNEXT 5]" in x for x in lines)
        # No \Recent in rev2 FETCH; the rev1 session, selecting after, still gets the new mail as \Recent.
        fetched = await rev2.command("FETCH 1:* FLAGS")
        assert b"\\Recent" not in b"".join(fetched), fetched
        rev1_select = _untagged(await rev1.command("SELECT INBOX"))
        assert b"* 4 RECENT" in rev1_select and any(x.startswith(b"* OK [UNSEEN ") for x in rev1_select), rev1_select
        # New mail: EXISTS, never RECENT, for the rev2 session.
        data = _msg(5, "late")
        appended = await rev1.command(f"APPEND INBOX {{{len(data)}+}}\r\n".encode() + data)
        assert b"* 5 RECENT" in b"".join(appended), appended  # the rev1 writer's own new mail is \Recent there
        noop = _untagged(await rev2.command("NOOP"))
        assert noop == [b"* 5 EXISTS"], noop


@trio_test
async def test_search_answers_esearch_as_in_rfc_9051() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c, connected(ports[0]) as old:
        await c.login()
        await old.login()
        await _fill(c)
        await c.command("ENABLE IMAP4rev2")
        await c.command("SELECT INBOX")
        # RFC 9051 6.4.4 examples (A282, A283, A284), on this mailbox.
        lines = await c.command('SEARCH RETURN (MIN COUNT) FLAGGED NOT FROM "Smith"')
        assert _untagged(lines) == [b'* ESEARCH (TAG "' + lines[-1].split(b" ")[0] + b'") MIN 2 COUNT 2'], lines
        lines = await c.command('SEARCH RETURN () FLAGGED NOT FROM "Smith"')
        assert _untagged(lines)[0].endswith(b") ALL 2,4"), lines
        lines = await c.command('SEARCH TEXT "string not in mailbox"')
        tag = lines[-1].split(b" ")[0]
        assert _untagged(lines) == [b'* ESEARCH (TAG "' + tag + b'")'], lines
        # A plain SEARCH is RETURN (ALL): ESEARCH, with UID for UID SEARCH.
        lines = await c.command("UID SEARCH FLAGGED")
        assert _untagged(lines) == [b'* ESEARCH (TAG "' + lines[-1].split(b" ")[0] + b'") UID ALL 1:2,4'], lines
        # The rev1 session on the same server still gets * SEARCH.
        await old.command("SELECT INBOX")
        assert _untagged(await old.command("SEARCH FLAGGED")) == [b"* SEARCH 1 2 4"]


@trio_test
async def test_rev2_mailbox_names_are_utf8() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        await c.command("ENABLE IMAP4rev2")
        assert b" OK " in (await c.command('CREATE "Entw\xc3\xbcrfe"'.encode("latin-1")))[-1]
        listed = b"".join(await c.command('LIST "" "Entw*"'))
        assert b'"Entw\xc3\xbcrfe"' in listed, listed
        status = _untagged(await c.command('STATUS "Entw\xc3\xbcrfe" (MESSAGES SIZE DELETED)'.encode("latin-1")))
        assert status == [b'* STATUS "Entw\xc3\xbcrfe" (MESSAGES 0 SIZE 0 DELETED 0)'], status
        # Enabling while a mailbox is selected: \Recent goes away at once.
        await _fill(c)
        await c.command("SELECT INBOX")
        assert b"\\Recent" not in b"".join(await c.command("FETCH 1 FLAGS"))
