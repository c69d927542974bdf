"""METADATA (RFC 5464) on the wire, following the RFC's examples (in-process
server on the fake store; tests/test_store_metadata.py runs the store's side)."""

from __future__ import annotations

from tests.imap_server_wire import RawClient, connected, running_server, trio_test


async def _ok(c: RawClient, command: str | bytes) -> list[bytes]:
    lines = await c.command(command)
    assert lines[-1].split()[1] == b"OK", lines
    return lines


@trio_test
async def test_rfc5464_examples() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        assert b" METADATA " in b"".join(await c.command("CAPABILITY"))
        await _ok(c, 'SETMETADATA "" (/shared/comment "Shared comment")')
        lines = await _ok(c, 'GETMETADATA "" /shared/comment')
        assert lines[0] == b'* METADATA "" (/shared/comment "Shared comment")\r\n'
        await _ok(c, b"SETMETADATA INBOX (/private/comment {33+}\r\nMy new comment across\r\ntwo lines.)")
        await _ok(c, 'SETMETADATA INBOX (/shared/comment "Shared comment")')
        lines = await _ok(c, 'GETMETADATA "INBOX" (/shared/comment /private/comment)')
        assert lines[0] == (
            b'* METADATA "INBOX" (/private/comment {33}\r\nMy new comment across\r\ntwo lines. '
            b'/shared/comment "Shared comment")\r\n'
        )
        # An entry asked for and not set is NIL.
        assert (await _ok(c, "GETMETADATA INBOX /private/nothing"))[0] == (
            b'* METADATA "INBOX" (/private/nothing NIL)\r\n'
        )
        # MAXSIZE leaves the longer values out and says how long the longest was.
        lines = await _ok(c, "GETMETADATA (MAXSIZE 20) INBOX (/private/comment /shared/comment)")
        assert lines[0] == b'* METADATA "INBOX" (/shared/comment "Shared comment")\r\n'
        assert lines[-1].split(b" ", 1)[1].startswith(b"OK [METADATA LONGENTRIES 33]")
        # DEPTH: the entries one level below, or all below.
        await _ok(c, 'SETMETADATA INBOX (/private/filters/values/small "SMALL" /private/filters/values/big "BIG")')
        await _ok(c, 'SETMETADATA INBOX (/private/filters/values/big/deeper "DEEP")')
        lines = await _ok(c, "GETMETADATA (DEPTH 1) INBOX /private/filters/values")
        assert lines[0] == (
            b'* METADATA "INBOX" (/private/filters/values NIL /private/filters/values/big "BIG" '
            b'/private/filters/values/small "SMALL")\r\n'
        )
        lines = await _ok(c, "GETMETADATA (DEPTH infinity) INBOX /private")
        assert b'/private/filters/values/big/deeper "DEEP"' in lines[0] and b"/shared/" not in lines[0]
        # NIL removes.
        await _ok(c, "SETMETADATA INBOX (/private/comment NIL)")
        assert b"/private/comment NIL" in (await _ok(c, "GETMETADATA INBOX /private/comment"))[0]


@trio_test
async def test_bounds_errors_and_mailbox_lifecycle() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        big = b"x" * (64 * 1024 + 1)
        lines = await c.command(b"SETMETADATA INBOX (/private/big {%d+}\r\n%s)" % (len(big), big))
        assert lines[-1].split(b" ", 1)[1].startswith(b"NO [METADATA MAXSIZE 65536]"), lines[-1][:80]
        for n in range(0, 500, 50):
            pairs = " ".join(f'/private/e{i} "v"' for i in range(n, n + 50))
            await _ok(c, f"SETMETADATA INBOX ({pairs})")
        lines = await c.command('SETMETADATA INBOX (/private/one-more "v")')
        assert lines[-1].split(b" ", 1)[1].startswith(b"NO [METADATA TOOMANY]"), lines
        await _ok(c, 'SETMETADATA INBOX (/private/e1 "replacing is fine")')
        for bad in (
            'SETMETADATA INBOX (/other/comment "x")',  # neither /private nor /shared
            'SETMETADATA INBOX (/private/a//b "x")',
            'SETMETADATA INBOX (/private/a* "x")',
            'SETMETADATA INBOX (/private/ "x")',
            "GETMETADATA (DEPTH 2) INBOX /private/x",
            "GETMETADATA (FOO 1) INBOX /private/x",
            "SETMETADATA INBOX ()",
        ):
            assert (await c.command(bad))[-1].split()[1] == b"BAD", bad
        await _ok(c, "SETMETADATA INBOX (/private/e0 NIL /private/e1 NIL)")  # room under the per-user bound
        lines = await c.command("GETMETADATA nowhere /private/comment")
        assert lines[-1].split(b" ", 1)[1].startswith(b"NO [NONEXISTENT]"), lines
        await _ok(c, "CREATE work")
        await _ok(c, 'SETMETADATA work (/private/comment "kept by rename")')
        await _ok(c, "RENAME work job")
        assert b'"kept by rename"' in (await _ok(c, "GETMETADATA job /private/comment"))[0]
        await _ok(c, "DELETE job")
        await _ok(c, "CREATE job")
        assert b"/private/comment NIL" in (await _ok(c, "GETMETADATA job /private/comment"))[0]
