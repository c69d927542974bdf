"""CATENATE (RFC 4469) with IMAP URLs (RFC 5092) and URL-PARTIAL (RFC 5550) on the
wire, and the URL parser on its own (in-process server on the fake store)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest

from imapd.protocol import fetch_spec as fs
from imapd.protocol.command_grammar import MAX_CATENATE_PARTS
from imapd.protocol.imap_url import BadUrl, MessageUrl, parse_url
from imapd.session.context import ServerSettings
from imapd.store_client import FetchedMessage, FetchRequest
from imapd.store_fake import FakeStore
from tests.imap_server_wire import RawClient, connected, running_server, trio_test

SOURCE = (
    b"Subject: source\r\n"
    b'Content-Type: multipart/mixed; boundary="s"\r\n\r\n'
    b"--s\r\nContent-Type: text/plain\r\n\r\nfirst part text\r\n"
    b"--s\r\nContent-Type: text/plain\r\n\r\nsecond\r\n--s--\r\n"
)


def lit(data: bytes) -> bytes:
    return b"{%d+}\r\n" % len(data) + data


async def _body(c: RawClient, seq: int) -> bytes:
    lines = await c.command(f"FETCH {seq} BODY.PEEK[]")
    head, _, rest = lines[0].partition(b"}\r\n")
    return rest[: int(head.rsplit(b"{", 1)[1])]


def test_url_forms() -> None:
    assert parse_url("/INBOX/;UID=3") == MessageUrl("INBOX", 3)
    full = parse_url(
        "imap://alice;AUTH=*@mail.example:143/Sent%20Items;UIDVALIDITY=7/;UID=5/;SECTION=1.MIME/;PARTIAL=2.9"
    )
    assert full == MessageUrl("Sent Items", 5, 7, fs.Section((1,), fs.TextSpec.MIME), (2, 9), "alice")
    assert parse_url("Caf%C3%A9/;UID=1;SECTION=TEXT").mailbox == "Café"  # relative; RFC 2192-style params
    assert parse_url("/INBOX/;UID=1/;PARTIAL=0").partial == (0, None)
    header = parse_url("/a/;UID=1/;SECTION=HEADER.FIELDS%20(SUBJECT%20TO)").section
    assert header == fs.Section((), fs.TextSpec.HEADER_FIELDS, ("SUBJECT", "TO"))
    for bad in (
        "/INBOX",  # no message
        "/INBOX/;UID=0",
        "/INBOX/;UID=x",
        "/;UID=1",  # no mailbox
        "/INBOX/;UID=1/;UID=2",
        "/INBOX/;UID=1/;SECTION=1.FOO",
        "/INBOX/;UID=1/;PARTIAL=1.0",
        "/INBOX/;UID=1;URLAUTH=anonymous:internal:abc",
        "/INBOX;FOO=1/;UID=1",
        "/%FF/;UID=1",
        "/INBOX/;UID=99999999999",
        "/" + "a" * 3000 + "/;UID=1",
    ):
        with pytest.raises(BadUrl):
            parse_url(bad)


@trio_test
async def test_catenate_builds_from_text_and_urls() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        caps = b"".join(await c.command("CAPABILITY"))
        assert b" CATENATE " in caps and b" URL-PARTIAL " in caps
        assert b" OK " in (await c.command(b"APPEND INBOX " + lit(SOURCE)))[-1]
        validity = (await c.command("STATUS INBOX (UIDVALIDITY)"))[0].split(b"UIDVALIDITY ")[1].rstrip(b")\r\n")
        lines = await c.command(
            b"APPEND Drafts (\\Seen) CATENATE (TEXT "
            + lit(b"Subject: built\r\n\r\n")
            + b' URL "/INBOX;UIDVALIDITY='
            + validity
            + b'/;UID=1/;SECTION=1" TEXT '
            + lit(b" | ")
            + b' URL "imap://alice@localhost/INBOX/;UID=1/;SECTION=2/;PARTIAL=1.3"'
            + b' URL "/INBOX/;UID=1/;SECTION=1/;PARTIAL=6")'
            + b' CATENATE (URL "/INBOX/;UID=1")'
        )
        assert b" OK [APPENDUID " in lines[-1] and b" 1:2]" in lines[-1], lines
        await c.command("SELECT Drafts")
        assert await _body(c, 1) == b"Subject: built\r\n\r\nfirst part text | ecopart text"
        assert await _body(c, 2) == SOURCE
        assert b"\\Seen" in (await c.command("FETCH 1 FLAGS"))[0]
        assert b"\\Seen" not in (await c.command("FETCH 2 FLAGS"))[0]


@trio_test
async def test_catenate_refusals() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c, connected(ports[0]) as bob:
        await c.login()
        await bob.login("bob", "hunter2")
        assert b" OK " in (await c.command(b"APPEND INBOX " + lit(SOURCE)))[-1]
        assert b" OK " in (await bob.command(b"APPEND INBOX " + lit(SOURCE)))[-1]
        for url in (
            "/INBOX/;UID=2",  # no such message
            "/INBOX;UIDVALIDITY=1/;UID=1",  # UIDVALIDITY changed
            "/Nowhere/;UID=1",
            "/INBOX/;UID=1/;SECTION=7",  # no such part
            "imap://bob@localhost/INBOX/;UID=1",  # someone else's mailbox
            "/INBOX/;UID=1;URLAUTH=anonymous",
        ):
            lines = await c.command(f'APPEND Drafts CATENATE (URL "{url}")')
            assert lines[-1].split(b" ")[1:3] == [b"NO", b"[BADURL"] and url.encode() in lines[-1], lines
        lines = await c.command('APPEND Drafts CATENATE (URL "/INBOX/;UID=1]x")')
        assert lines[-1].startswith(b"t") and b"[BADURL /INBOX/;UID=1x]" in lines[-1], lines  # "]" ends the code
        assert b"[TRYCREATE]" in (await c.command('APPEND Nowhere CATENATE (URL "/INBOX/;UID=1")'))[-1]
        for bad in ("CATENATE ()", "CATENATE (FOO bar)", "CATENATE (URL)", "CATENATE"):
            assert b" BAD " in (await c.command(f"APPEND Drafts {bad}"))[-1], bad
        many = " ".join(['URL "/INBOX/;UID=1"'] * (MAX_CATENATE_PARTS + 1))
        assert b" BAD " in (await c.command(f"APPEND Drafts CATENATE ({many})"))[-1]
        # Streamed messages, then a CATENATE with a bad URL in the same MULTIAPPEND: nothing is stored.
        lines = await c.command(b"APPEND Drafts " + lit(SOURCE) + b' CATENATE (URL "/INBOX/;UID=9")')
        assert b" NO [BADURL /INBOX/;UID=9]" in lines[-1], lines
        status = await c.command("STATUS Drafts (MESSAGES)")
        assert b"MESSAGES 0" in status[0], status


@trio_test
async def test_catenate_is_bounded_by_appendlimit() -> None:
    settings = ServerSettings(allow_plaintext_login=True, tls_available=False, append_limit=len(SOURCE) * 3)
    async with running_server(settings=settings) as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        assert b" OK " in (await c.command(b"APPEND INBOX " + lit(SOURCE)))[-1]
        three = " ".join(['URL "/INBOX/;UID=1"'] * 3)
        assert b" OK " in (await c.command(f"APPEND Drafts CATENATE ({three})"))[-1]
        four = " ".join(['URL "/INBOX/;UID=1"'] * 4)
        lines = await c.command(f"APPEND Drafts CATENATE ({four})")
        assert b" NO [TOOBIG]" in lines[-1], lines


class _CountingStore(FakeStore):
    """Counts the whole-message fetches CATENATE makes."""

    body_fetches = 0

    def fetch(self, user: str, mailbox_id: int, request: FetchRequest) -> AsyncGenerator[FetchedMessage, None]:
        if request.with_body:
            self.body_fetches += 1
        return super().fetch(user, mailbox_id, request)


@trio_test
async def test_urls_into_one_message_in_a_row_fetch_it_once() -> None:
    store = _CountingStore()
    store.create_user("alice", "secret")
    async with running_server(store=store) as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        for _ in range(2):
            assert b" OK " in (await c.command(b"APPEND INBOX " + lit(SOURCE)))[-1]
        same = " ".join(f'URL "/INBOX/;UID=1/;SECTION={n}/;PARTIAL=0.1"' for n in (1, 2, 1, 2))
        before = store.body_fetches
        assert b" OK " in (await c.command(f"APPEND Drafts CATENATE ({same})"))[-1]
        assert store.body_fetches - before == 1
        mixed = 'URL "/INBOX/;UID=1" URL "/INBOX/;UID=2" URL "/inbox/;UID=1"'
        before = store.body_fetches
        assert b" OK " in (await c.command(f"APPEND Drafts CATENATE ({mixed})"))[-1]
        assert store.body_fetches - before == 3


@trio_test
async def test_binary_text_part_is_stored_fit_for_body() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        head = b"Subject: bin\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        lines = await c.command(b"APPEND INBOX CATENATE (TEXT " + lit(head) + b" TEXT ~{4+}\r\n\x00\x01\x02\x03)")
        assert b" OK " in lines[-1], lines
        await c.command("SELECT INBOX")
        assert b"\x00" not in await _body(c, 1)  # stored as base64
        lines = await c.command("FETCH 1 BINARY.PEEK[1]")
        assert lines[0] == b"* 1 FETCH (BINARY[1] ~{4}\r\n\x00\x01\x02\x03)\r\n", lines


@trio_test
async def test_catenate_after_streamed_messages_in_one_multiappend() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        await c.command("ENABLE UTF8=ACCEPT")
        assert b" OK " in (await c.command(b"APPEND INBOX " + lit(SOURCE)))[-1]
        lines = await c.command(
            b"APPEND Drafts "
            + lit(b"Subject: one\r\n\r\n1\r\n")  # streamed
            + b" (\\Seen) CATENATE (TEXT "
            + lit(b"Subject: two\r\n\r\n")
            + b' URL "/INBOX/;UID=1/;SECTION=2")'  # read whole from here on
            + b" "
            + lit(b"Subject: three\r\n\r\n3\r\n")
            + b' CATENATE (URL "/INBOX/;UID=1/;SECTION=1")'
        )
        assert b" OK [APPENDUID " in lines[-1] and b" 1:4]" in lines[-1], lines
        lines = await c.command(
            b"APPEND Drafts UTF8 (~{%d+}\r\n" % len(SOURCE) + SOURCE + b') CATENATE (URL "/INBOX/;UID=1/;PARTIAL=0.9")'
        )
        assert b" OK [APPENDUID " in lines[-1] and b" 5:6]" in lines[-1], lines
        await c.command("SELECT Drafts")
        bodies = [await _body(c, n) for n in range(1, 7)]
        assert bodies == [
            b"Subject: one\r\n\r\n1\r\n",
            b"Subject: two\r\n\r\nsecond",
            b"Subject: three\r\n\r\n3\r\n",
            b"first part text",
            SOURCE,
            b"Subject: ",
        ]
        assert b"\\Seen" in (await c.command("FETCH 2 FLAGS"))[0]
