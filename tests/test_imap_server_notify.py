"""NOTIFY (RFC 5465) on the wire: one session asks, another changes the account
(in-process server on the fake store; the real store's WatchAccount is tested in
tests/test_store_engine.py and end to end in tests/test_imap_clients_notify.py)."""

from __future__ import annotations

import trio

from imapd.account_hub import AccountHub
from imapd.session import notify_state
from imapd.store_fake import FakeStore
from tests.imap_server_wire import RawClient, connected, running_server, trio_test

ALL = "(MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)"


async def _ok(c: RawClient, command: str | bytes) -> list[bytes]:
    lines = await c.command(command)
    assert lines[-1].split()[1] == b"OK", lines
    return lines


def _untagged(lines: list[bytes]) -> list[bytes]:
    return [line for line in lines if line.startswith(b"* ")]


@trio_test
async def test_status_and_list_notifications_for_another_sessions_changes() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as a, connected(ports[0]) as b:
        await a.login()
        await b.login()
        assert b" NOTIFY " in b"".join(await a.command("CAPABILITY"))
        await _ok(b, "CREATE Work")
        lines = await _ok(a, f"NOTIFY SET STATUS (mailboxes (Work Other) {ALL})")
        assert _untagged(lines)[0].startswith(b'* STATUS "Work" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY ')
        assert len(_untagged(lines)) == 1  # Other does not exist; INBOX is not asked for
        await _ok(b, "APPEND Work {2+}\r\nab")
        await _ok(b, "APPEND INBOX {2+}\r\nab")  # not in the spec: nothing about it
        lines = _untagged(await _ok(a, "NOOP"))
        # UIDVALIDITY was in the SET STATUS answer: not again
        assert len(lines) == 1 and lines[0].startswith(b'* STATUS "Work" (MESSAGES 1 UIDNEXT 2 UNSEEN 1 HIGHESTMODSEQ ')
        await _ok(b, "SELECT Work")
        await _ok(b, "STORE 1 +FLAGS (\\Flagged)")
        lines = _untagged(await _ok(a, "NOOP"))  # only the modseq moved
        assert len(lines) == 1 and lines[0].startswith(b'* STATUS "Work" (HIGHESTMODSEQ '), lines
        await _ok(b, "STORE 1 +FLAGS (\\Seen)")
        lines = _untagged(await _ok(a, "NOOP"))  # only UNSEEN (and the modseq) moved
        assert len(lines) == 1 and lines[0].startswith(b'* STATUS "Work" (UNSEEN 0 HIGHESTMODSEQ '), lines
        await _ok(b, "STORE 1 +FLAGS (\\Deleted)")
        await _ok(b, "EXPUNGE")
        lines = _untagged(await _ok(a, "NOOP"))  # two changes, one STATUS with where it ended
        assert len(lines) == 1 and lines[0].startswith(b'* STATUS "Work" (MESSAGES 0 UIDNEXT 2 UNSEEN 0 HIGHESTMODSEQ ')
        await _ok(b, "CREATE Other")
        await _ok(b, "SUBSCRIBE Other")
        await _ok(b, "SUBSCRIBE Work")
        await _ok(b, "UNSUBSCRIBE Work")  # undone before a heard of it: no news
        lines = _untagged(await _ok(a, "NOOP"))
        assert lines == [b'* LIST () "/" "Other"\r\n', b'* LIST (\\Subscribed) "/" "Other"\r\n'], lines
        await _ok(b, "CLOSE")
        await _ok(b, "RENAME Other Work/Sub")
        await _ok(b, "DELETE Work/Sub")
        lines = _untagged(await _ok(a, "NOOP"))  # Work/Sub itself is in no filter of a's
        assert lines == [b'* LIST () "/" "Work/Sub" ("OLDNAME" ("Other"))\r\n'], lines
        # Its own changes too (as Dovecot).
        await _ok(a, "CREATE Other")
        assert _untagged(await _ok(a, "NOOP")) == [b'* LIST () "/" "Other"\r\n']
        await _ok(b, "DELETE Other")
        assert _untagged(await _ok(a, "NOOP")) == [b'* LIST (\\NonExistent) "/" "Other"\r\n']
        await _ok(a, "CREATE Other")
        await _ok(a, "NOTIFY NONE")
        await _ok(b, "APPEND Work {2+}\r\nab")
        await _ok(b, "DELETE Other")
        assert _untagged(await _ok(a, "NOOP")) == []


@trio_test
async def test_filters_personal_inboxes_subtree_subscribed() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as a, connected(ports[0]) as b:
        await a.login()
        await b.login()
        for name in ("Lists", "Lists/Dev", "Misc", "Fav"):
            await _ok(b, f"CREATE {name}")
        await _ok(b, "SUBSCRIBE Fav")
        await _ok(
            a,
            "NOTIFY SET (inboxes (MessageNew MessageExpunge)) (subtree Lists (MessageNew MessageExpunge))"
            " (subscribed (MessageNew MessageExpunge)) (personal (MailboxName))",
        )
        for name in ("INBOX", "Lists/Dev", "Misc", "Fav"):
            await _ok(b, f"APPEND {name} {{2+}}\r\nab")
        lines = _untagged(await _ok(a, "NOOP"))
        assert [line.split(b" (")[0] for line in lines] == [
            b'* STATUS "INBOX"',
            b'* STATUS "Lists/Dev"',
            b'* STATUS "Fav"',
        ]
        await _ok(b, "CREATE Misc/New")  # personal: MailboxName
        assert _untagged(await _ok(a, "NOOP")) == [b'* LIST () "/" "Misc/New"\r\n']
        await _ok(b, "CREATE Deep/Er")  # the superior name is created on the way: two new mailboxes
        assert _untagged(await _ok(a, "NOOP")) == [b'* LIST () "/" "Deep"\r\n', b'* LIST () "/" "Deep/Er"\r\n']
        # The selected mailbox gets its usual EXISTS, never a STATUS.
        await _ok(a, "SELECT Fav")
        await _ok(b, "APPEND Fav {2+}\r\nab")
        lines = _untagged(await _ok(a, "NOOP"))
        assert b"* 2 EXISTS\r\n" in lines and not any(line.startswith(b"* STATUS") for line in lines), lines


@trio_test
async def test_refusals() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as a:
        await a.login()
        lines = await a.command("NOTIFY SET (personal (MessageNew MessageExpunge AnnotationChange))")
        assert lines[-1].startswith(
            b"t2 NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)] "
        ), lines
        for bad in (
            "NOTIFY SET (personal (MessageNew (UID) MessageExpunge))",  # fetch-att only for selected
            "NOTIFY SET (foo (MessageNew))",
            "NOTIFY SET",
            "NOTIFY SET (personal MessageNew)",
            "NOTIFY",
        ):
            assert (await a.command(bad))[-1].split()[1] == b"BAD", bad
        many = " ".join(f"m{i}" for i in range(1001))
        assert (await a.command(f"NOTIFY SET (mailboxes ({many}) (MessageNew))"))[-1].split()[1] == b"BAD"
        groups = " ".join("(personal (MessageNew))" for _ in range(33))
        assert (await a.command(f"NOTIFY SET {groups}"))[-1].split()[1] == b"BAD"
        await _ok(a, "LOGOUT")
    async with running_server() as (_, ports, _store), connected(ports[0]) as anon:
        assert (await anon.command("NOTIFY NONE"))[-1].split()[1] == b"BAD"  # not before login


@trio_test
async def test_idle_delivers_notifications() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as a, connected(ports[0]) as b:
        await a.login()
        await b.login()
        await _ok(b, "CREATE Work")
        await _ok(a, f"NOTIFY SET (personal {ALL})")
        await a.send(b"i1 IDLE\r\n")
        assert (await a.read_line()).startswith(b"+ ")
        with trio.fail_after(5):
            await _ok(b, "APPEND Work {2+}\r\nab")
            line = await a.read_line()
            assert line.startswith(b'* STATUS "Work" (MESSAGES 1 UIDNEXT 2 '), line
            await _ok(b, "CREATE Fresh")
            assert await a.read_line() == b'* LIST () "/" "Fresh"\r\n'
        await a.send(b"DONE\r\n")
        assert (await a.until_tagged("i1"))[-1].startswith(b"i1 OK")


@trio_test
async def test_overflow_instead_of_unbounded_memory() -> None:
    store = FakeStore()
    store.create_user("alice", "secret")
    async with running_server(store) as (server, ports, _), connected(ports[0]) as a, connected(ports[0]) as b:
        await a.login()
        await b.login()
        await _ok(a, "NOTIFY SET (personal (MessageNew MessageExpunge MailboxName))")
        # More mailbox changes than a session keeps pending: the account feed's buffer and
        # then the session's own bound give out, and the client is told so once.
        for i in range(notify_state.MAX_PENDING + 5):
            await _ok(b, f"CREATE m{i}")
        lines = _untagged(await _ok(a, "NOOP"))
        assert lines[-1].startswith(b"* OK [NOTIFICATIONOVERFLOW]"), lines[-3:]
        assert len(lines) <= notify_state.MAX_PENDING + 1
        await _ok(b, "CREATE after")
        assert _untagged(await _ok(a, "NOOP")) == []  # NOTIFY is off until asked again
        await _ok(a, "NOTIFY SET (personal (MailboxName))")
        opened = store.calls
        await _ok(a, "NOTIFY SET (personal (MailboxName SubscriptionChange))")
        assert store.calls == opened + 1  # the LIST of mailboxes; the account stream stayed open
        await _ok(b, "CREATE again")
        assert _untagged(await _ok(a, "NOOP")) == [b'* LIST () "/" "again"\r\n']
        accounts: AccountHub = server.ctx.hub.accounts
        assert accounts.open_feeds == 1
        await _ok(a, "NOTIFY NONE")
        assert accounts.open_feeds == 0  # the last NOTIFY session left: the store stream ends


@trio_test
async def test_message_new_fetch_attributes_for_the_selected_mailbox() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as a, connected(ports[0]) as b:
        await a.login()
        await b.login()
        await _ok(a, "SELECT INBOX")
        await _ok(
            a,
            "NOTIFY SET (selected (MessageNew (UID BODY.PEEK[HEADER.FIELDS (Subject)]) MessageExpunge FlagChange))",
        )
        await _ok(b, "APPEND INBOX {22+}\r\nSubject: hello\r\n\r\nbody")
        lines = await _ok(a, "NOOP")
        assert lines[0] == b"* 1 EXISTS\r\n", lines
        fetch = b"".join(line for line in lines if b"FETCH" in line)
        assert fetch.startswith(b"* 1 FETCH (") and b"UID 1" in fetch and b"Subject: hello" in fetch, lines
        assert lines[-1].startswith(b"t4 OK NOOP")  # the FETCH's own tagged line stays inside


@trio_test
async def test_a_refused_set_keeps_the_settings_in_force() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as a, connected(ports[0]) as b:
        await a.login()
        await b.login()
        await _ok(a, "NOTIFY SET (personal (MailboxName))")
        assert (await a.command("NOTIFY SET (personal (AnnotationChange))"))[-1].split()[1] == b"NO"
        assert (await a.command("NOTIFY SET (personal (MessageNew (UID)))"))[-1].split()[1] == b"BAD"
        await _ok(b, "CREATE Kept")
        assert _untagged(await _ok(a, "NOOP")) == [b'* LIST () "/" "Kept"\r\n']
