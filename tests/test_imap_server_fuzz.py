"""Random client input never crashes or hangs the server: every connection
ends with answers or a clean close, and the server keeps serving others."""

from __future__ import annotations

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.imap_server_wire import RawClient, connected, running_server

_PIECES = st.sampled_from(
    [
        b"a1 ",
        b"LOGIN alice secret",
        b"SELECT INBOX",
        b"FETCH 1:* (FLAGS BODY[])",
        b"UID STORE 1 +FLAGS (\\Seen)",
        b"SEARCH OR FROM x (TO y) ",
        b"APPEND INBOX {5+}\r\nhello",
        b"APPEND INBOX {3}\r\n",
        b"{99999999}\r\n",
        b"IDLE\r\n",
        b"DONE\r\n",
        b"AUTHENTICATE PLAIN\r\n",
        b"*\r\n",
        b'"unterminated',
        b"(((((",
        b"\r\n",
        b"\x00\xff\x80",
        b"STARTTLS\r\n",
        b'LIST "" *\r\n',
    ]
)
_INPUT = st.lists(st.one_of(_PIECES, st.binary(max_size=40)), max_size=12).map(b"".join)


async def _drain(client: RawClient) -> None:
    with trio.move_on_after(0.2):
        while True:
            await client.read_line()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_INPUT)
def test_random_input_never_breaks_the_server(data: bytes) -> None:
    async def main() -> None:
        with trio.fail_after(20):
            async with running_server() as (_, ports, _store):
                async with connected(ports[0]) as fuzz:
                    await fuzz.send(b"z0 LOGIN alice secret\r\n" + data + b"\r\n")
                    try:
                        await _drain(fuzz)
                    except (EOFError, trio.BrokenResourceError):
                        pass
                async with connected(ports[0]) as probe:
                    assert (await probe.command("NOOP"))[-1].startswith(b"t1 OK")

    trio.run(main)
