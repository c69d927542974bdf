"""UTF8=ACCEPT (RFC 6855) on the wire: ENABLE, UTF-8 mailbox names both ways,
the UTF8 APPEND data item, no SEARCH CHARSET once enabled (in-process server
on the fake store, loopback sockets)."""

from __future__ import annotations

from imapd.protocol import commands as c
from imapd.protocol import events as ev
from imapd.protocol.parser import CommandParser
from tests.imap_server_wire import connected, running_server, trio_test

NAME = "Ärger/Post"
UTF8 = NAME.encode()
MESSAGE = "From: jösé@exämple.org\r\nSubject: Grüße\r\n\r\nhéllo\r\n".encode()


@trio_test
async def test_enable_switches_mailbox_names_to_utf8() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        pre = b"".join(await c.command("CAPABILITY"))
        assert b"UTF8=ACCEPT" not in pre  # ENABLE needs a login first
        await c.login()
        assert b" UTF8=ACCEPT" in b"".join(await c.command("CAPABILITY"))
        assert b" OK " in (await c.command('CREATE "&AMQ-rger/Post"'))[-1]  # created in modified UTF-7
        listed = await c.command('LIST "" "*rger*"')
        assert b'"&AMQ-rger/Post"' in b"".join(listed), listed
        # 8-bit before ENABLE is not a name this client may send.
        assert b" OK " not in (await c.command(b'SELECT "' + UTF8 + b'"'))[-1]
        lines = await c.command("ENABLE UTF8=ACCEPT")
        assert lines[0] == b"* ENABLED UTF8=ACCEPT\r\n", lines
        listed = await c.command('LIST "" "*"')
        assert b'"/" "' + UTF8 + b'"\r\n' in b"".join(listed), listed
        assert b" OK " in (await c.command(b'SELECT "' + UTF8 + b'"'))[-1]
        status = await c.command(b'STATUS "' + UTF8 + b'" (MESSAGES)')
        assert status[0] == b'* STATUS "' + UTF8 + b'" (MESSAGES 0)\r\n', status
        assert b" OK " in (await c.command(b'CREATE "Caf\xc3\xa9"'))[-1]
        assert b'"Caf\xc3\xa9"' in b"".join(await c.command('LIST "" "Caf*"'))
        # RFC 6855 3: strings are UTF-8 now, so a CHARSET is refused; without one the search runs.
        assert b" BAD " in (await c.command("SEARCH CHARSET UTF-8 ALL"))[-1]
        assert b" OK " in (await c.command(b'SEARCH SUBJECT "Gr\xc3\xbc"'))[-1]


@trio_test
async def test_utf8_append_data_item() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        await c.command("ENABLE UTF8=ACCEPT")
        one = b"APPEND INBOX UTF8 (~{%d+}\r\n" % len(MESSAGE) + MESSAGE + b")"
        assert b" OK [APPENDUID " in (await c.command(one))[-1]
        # MULTIAPPEND: a UTF8 message, then a plain one, then UTF8 with flags and a date.
        many = (
            b"APPEND INBOX UTF8 (~{%d+}\r\n" % len(MESSAGE)
            + MESSAGE
            + b') {5+}\r\nplain (\\Seen) "05-Dec-2026 10:00:00 +0000" UTF8 (~{%d+}\r\n' % len(MESSAGE)
            + MESSAGE
            + b")"
        )
        lines = await c.command(many)
        assert b" OK [APPENDUID " in lines[-1] and b" 2:4]" in lines[-1], lines
        await c.command("SELECT INBOX")
        lines = await c.command("FETCH 1:4 (RFC822.SIZE FLAGS)")
        sizes = [x.split(b"RFC822.SIZE ")[1].split(b")")[0].split(b" ")[0] for x in lines[:-1]]
        assert sizes == [b"%d" % len(MESSAGE), b"%d" % len(MESSAGE), b"5", b"%d" % len(MESSAGE)], lines
        assert b"\\Seen" in lines[3]
        for bad in (
            b"APPEND INBOX UTF8 ({5+}\r\nplain)",  # a plain literal inside UTF8 ( )
            b"APPEND INBOX UTF8 (~{5+}\r\nplain",  # no closing parenthesis
            b"APPEND INBOX UTF8 (~{5+}\r\nplain) junk",
        ):
            assert b" BAD " in (await c.command(bad))[-1], bad
        assert b"EXISTS" not in b"".join(await c.command("NOOP"))  # nothing of the refused ones was stored


def test_buffered_parser_reads_utf8_append() -> None:
    """Before login APPEND is not streamed: the command grammar reads UTF8 ( literal8 ) itself."""
    parser = CommandParser()
    parser.receive_data(b"a APPEND INBOX UTF8 (~{5+}\r\nhello)\r\n")
    event = parser.next_event()
    assert isinstance(event, ev.CommandReceived) and isinstance(event.command, c.Append), event
    assert event.command.messages[0].data == b"hello" and event.command.messages[0].binary
