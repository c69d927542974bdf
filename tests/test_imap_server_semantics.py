"""Issue 11 items 5, 6 and 8 on the fake store (the differential test checks them against Dovecot too)."""

from __future__ import annotations

from tests.imap_server_wire import RawClient, connected, running_server, trio_test

COMMENTED = (
    b"From: <user-from (comment)@ (comment) domain.org>\r\n"
    b"To: user@domain (Real Name), Name (not this) <n@x.org>\r\n"
    b"Subject: comments\r\n\r\nbody\r\n"
)
ODD_NAME = b'"!#$&\'+,-.0123456789:;<=>?@^_`|[}"'


async def _append(c: RawClient, mailbox: bytes, message: bytes) -> None:
    lines = await c.command(b"APPEND " + mailbox + b" {%d+}\r\n" % len(message) + message)
    assert b"OK" in lines[-1], lines


@trio_test
async def test_comment_is_the_display_name_and_search_from_sees_through_cfws() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        await _append(c, b"INBOX", COMMENTED)
        await c.command("SELECT INBOX")
        envelope = (await c.command("FETCH 1 ENVELOPE"))[0]
        assert b'((NIL NIL "user-from" "domain.org"))' in envelope  # a comment inside <> names nobody
        assert b'(("Real Name" NIL "user" "domain")("Name" NIL "n" "x.org"))' in envelope
        assert (await c.command("SEARCH FROM user-from@domain.org"))[0] == b"* SEARCH 1\r\n"
        assert (await c.command("SEARCH TO user@domain"))[0] == b"* SEARCH 1\r\n"
        assert (await c.command("SEARCH FROM nobody@domain.org"))[0] == b"* SEARCH\r\n"


@trio_test
async def test_list_extended_and_lsub_corners() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        assert (await c.command('LIST (RECURSIVEMATCH REMOTE) "" ""'))[-1].startswith(b"t2 BAD")
        await c.command("CREATE parent/child")
        await c.command("SUBSCRIBE parent/child")
        lsub = await c.command('LSUB "" "%"')
        assert b'* LSUB (\\Noselect) "/" "parent"\r\n' in lsub
        assert b'* LSUB (\\Drafts) "/" "Drafts"\r\n' in lsub  # special-use shown, like Dovecot
        assert not any(b"parent/child" in line for line in lsub)
        assert b'* LSUB () "/" "parent/child"\r\n' in await c.command('LSUB "" "parent/%"')
        extended = await c.command('LIST (SUBSCRIBED) "" "*"')
        assert b'* LIST (\\Subscribed) "/" "Drafts"\r\n' in extended  # only what the options ask for
        children = await c.command('LIST "" "*" RETURN (CHILDREN)')
        assert b'* LIST (\\HasChildren) "/" "parent"\r\n' in children
        plain = await c.command('LIST "" "Drafts"')
        assert plain[0] == b'* LIST (\\HasNoChildren \\Drafts) "/" "Drafts"\r\n'


@trio_test
async def test_names_that_are_not_modified_utf7_are_no_not_bad() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        assert (await c.command(b"SELECT " + ODD_NAME))[-1].startswith(b"t2 NO [NONEXISTENT]")
        assert (await c.command(b"STATUS " + ODD_NAME + b" (MESSAGES)"))[-1].startswith(b"t3 NO [NONEXISTENT]")
        assert (await c.command(b"CREATE " + ODD_NAME))[-1].startswith(b"t4 NO [CANNOT]")
        assert await c.command(b'LIST "" ' + ODD_NAME) == [b"t5 OK LIST completed\r\n"]
        assert (await c.command(b'LSUB "" ' + ODD_NAME))[-1].startswith(b"t6 OK")
        assert (await c.command(b"RENAME Drafts " + ODD_NAME))[-1].startswith(b"t7 NO [CANNOT]")


@trio_test
async def test_a_subscription_outlives_its_mailbox_and_stays_with_its_name() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        await c.command("CREATE gone")
        await c.command("SUBSCRIBE gone")
        await c.command("DELETE gone")
        subscribed = await c.command('LIST (SUBSCRIBED) "" "*"')
        assert b'* LIST (\\Subscribed \\NonExistent) "/" "gone"\r\n' in subscribed
        assert not any(b'"gone"' in line for line in await c.command('LIST "" "*"'))
        assert b'* LSUB () "/" "gone"\r\n' in await c.command('LSUB "" "*"')
        await c.command("CREATE gone")  # the name takes its subscription back
        assert b'* LIST (\\Subscribed) "/" "gone"\r\n' in await c.command('LIST (SUBSCRIBED) "" "gone"')
        await c.command("RENAME gone moved")  # subscriptions belong to names (as in Dovecot)
        after = await c.command('LIST (SUBSCRIBED) "" "*"')
        assert b'* LIST (\\Subscribed \\NonExistent) "/" "gone"\r\n' in after
        assert not any(b'"moved"' in line for line in after)
        assert (await c.command("UNSUBSCRIBE gone"))[-1].endswith(b" OK UNSUBSCRIBE completed\r\n")
        assert not any(b'"gone"' in line for line in await c.command('LSUB "" "*"'))
