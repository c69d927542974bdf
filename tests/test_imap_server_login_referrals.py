"""LOGIN-REFERRALS (RFC 2221): advertised before and after login, as Dovecot does; with no
referral configured, LOGIN and AUTHENTICATE answer without a [REFERRAL] code, success or not."""

from __future__ import annotations

import base64

from tests.imap_server_wire import connected, running_server, trio_test


@trio_test
async def test_advertised_and_no_referral_issued() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        before = b"".join(await c.command("CAPABILITY"))
        assert b" LOGIN-REFERRALS" in before
        failed = await c.command("LOGIN nobody wrong-password")
        assert failed[-1].split()[1] == b"NO" and b"[REFERRAL" not in b"".join(failed)
        plain = base64.b64encode(b"\0nobody\0wrong").decode()
        failed = await c.command(f"AUTHENTICATE PLAIN {plain}")
        assert failed[-1].split()[1] == b"NO" and b"[REFERRAL" not in b"".join(failed)
        done = await c.command('LOGIN alice "secret"')
        assert done[-1].split()[1] == b"OK" and b"[REFERRAL" not in b"".join(done)
        assert b" LOGIN-REFERRALS" in b"".join(await c.command("CAPABILITY"))
