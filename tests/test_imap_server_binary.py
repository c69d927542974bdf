"""BINARY (RFC 3516) on the wire: FETCH BINARY[part]<partial>, BINARY.PEEK,
BINARY.SIZE, literal8 both ways (APPEND ~{n}, responses ~{n}), UNKNOWN-CTE
(in-process server on the fake store, loopback sockets)."""

from __future__ import annotations

import base64

from tests.imap_server_wire import RawClient, connected, running_server, trio_test

PAYLOAD = bytes(range(256))
ATTACHED = (
    b"Subject: attached\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(PAYLOAD).replace(b"\n", b"\r\n")
    + b"--b\r\nContent-Type: application/x-odd\r\nContent-Transfer-Encoding: x-gzip64\r\n\r\nH4sI\r\n"
    b"--b--\r\n"
)
RAW = b"Subject: raw\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01 binary \xff\r\n"


async def _append(c: RawClient, data: bytes, literal: bytes = b"{%d+}") -> list[bytes]:
    lines = await c.command(b"APPEND INBOX " + literal % len(data) + b"\r\n" + data)
    assert b" OK " in lines[-1], lines
    return lines


@trio_test
async def test_binary_fetch_decodes_and_sizes() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        assert b" BINARY " in b"".join(await c.command("CAPABILITY"))
        await _append(c, ATTACHED)
        await c.command("SELECT INBOX")
        lines = await c.command("FETCH 1 (BINARY.SIZE[2] BINARY.PEEK[2] BINARY.PEEK[1])")
        assert lines[0] == (
            b"* 1 FETCH (BINARY.SIZE[2] 256 BINARY[2] ~{256}\r\n" + PAYLOAD + b" BINARY[1] {5}\r\nhello)\r\n"
        ), lines
        lines = await c.command("FETCH 1 BINARY.PEEK[2]<250.100>")
        assert lines[0] == b"* 1 FETCH (BINARY[2]<250> ~{6}\r\n" + PAYLOAD[250:] + b")\r\n", lines
        assert b"\\Seen" not in b"".join(await c.command("FETCH 1 FLAGS"))
        lines = await c.command("FETCH 1 BINARY[2]<0.1>")  # not PEEK: sets \Seen
        assert b"FLAGS (\\Seen" in lines[0], lines
        for item in ("BINARY.PEEK[3]", "BINARY.SIZE[3]", "BINARY.PEEK[]"):
            lines = await c.command(f"FETCH 1 {item}")
            assert lines[-1].split(b" ", 2)[1:2] == [b"NO"] and b"[UNKNOWN-CTE]" in lines[-1], (item, lines)
        assert b" BAD " in (await c.command("FETCH 1 BINARY.PEEK[1.MIME]"))[-1]
        lines = await c.command("FETCH 1 BINARY.PEEK[9]")
        assert lines[0] == b"* 1 FETCH (BINARY[9] NIL)\r\n", lines


@trio_test
async def test_literal8_append_is_stored_fit_for_body_and_binary() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        await _append(c, RAW, b"~{%d}")  # synchronizing literal8
        await _append(c, RAW, b"~{%d+}")  # and LITERAL+ form
        await c.command("SELECT INBOX")
        for seq in (1, 2):
            lines = await c.command(f"FETCH {seq} (BINARY.PEEK[1] BINARY.SIZE[1] BODY.PEEK[TEXT])")
            body = base64.b64encode(b"\x00\x01 binary \xff\r\n")
            assert lines[0] == (
                b"* %d FETCH (BINARY[1] ~{13}\r\n\x00\x01 binary \xff\r\n BINARY.SIZE[1] 13 BODY[TEXT] {%d}\r\n%s)\r\n"
                % (seq, len(body), body)
            ), lines
        lines = await c.command("FETCH 1 BINARY.PEEK[]")
        assert lines[0] == b"* 1 FETCH (BINARY[] ~{%d}\r\n" % len(RAW) + RAW + b")\r\n", lines
        # literal8 anywhere but an APPEND message is a syntax error.
        assert b" BAD " in (await c.command(b"SEARCH SUBJECT ~{3}\r\nraw"))[-1]
