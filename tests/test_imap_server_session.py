"""The IMAP server on the in-memory store: commands, multi-session updates,
IDLE, limits, fencing and drain. Real sockets on 127.0.0.1, one process."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import grpc
import trio

from imapd.errors import StoreErrorKind
from imapd.session.context import ServerSettings
from imapd.session.error_map import reply_for
from imapd.store_client import AppendResult, AppendSpec, MailboxInfo
from imapd.store_fake import FakeStore
from imapd.store_grpc import store_error
from tests.imap_server_wire import RawClient, connected, running_server, trio_test

MSG = b"From: Ann <ann@example.org>\r\nTo: bob@example.org\r\nSubject: Hello there\r\n\r\nThe body text.\r\n"


def _asked_header(store: FakeStore) -> bool:
    return store.fetch_requests[-1].with_header


def _joined(lines: list[bytes]) -> bytes:
    return b"".join(lines)


async def _append(client: RawClient, data: bytes = MSG, flags: str = "") -> list[bytes]:
    head = f"APPEND INBOX ({flags}) {{{len(data)}+}}\r\n".encode()
    return await client.command(head + data)


@trio_test
async def test_greeting_capabilities_and_logindisabled_without_tls() -> None:
    settings = ServerSettings(allow_plaintext_login=False, tls_available=True)
    async with running_server(settings=settings) as (_, ports, _store), connected(ports[0]) as c:
        caps = _joined(await c.command("CAPABILITY"))
        for cap in (
            b"IMAP4rev1",
            b"LITERAL+",
            b"SASL-IR",
            b"ID",
            b"ENABLE",
            b"IDLE",
            b"NAMESPACE",
            b"UIDPLUS",
            b"MOVE",
            b"UNSELECT",
            b"CHILDREN",
            b"SPECIAL-USE",
            b"LIST-EXTENDED",
            b"LIST-STATUS",
            b"ESEARCH",
            b"APPENDLIMIT=",
            b"MULTIAPPEND",
            b"CONDSTORE",
            b"QRESYNC",
            b"QUOTA",
            b"STARTTLS",
            b"LOGINDISABLED",
        ):
            assert cap in caps
        assert b"AUTH=PLAIN" not in caps
        reply = await c.command('LOGIN alice "secret"')
        assert reply[-1].startswith(b"t2 NO [PRIVACYREQUIRED]")
        reply = await c.command("AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==")
        assert b" NO [PRIVACYREQUIRED]" in reply[-1]


@trio_test
async def test_basic_mail_flow() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        listing = _joined(await c.command('LIST "" "*"'))
        assert b'(\\HasNoChildren \\Sent) "/" "Sent"' in listing
        assert b"\\Trash" in listing and b"\\Junk" in listing and b"\\Archive" in listing and b"\\Drafts" in listing
        sel = _joined(await c.command("SELECT INBOX"))
        assert b"* 0 EXISTS" in sel and b"[UIDVALIDITY " in sel and b"[HIGHESTMODSEQ " in sel
        reply = await _append(c, flags="\\Flagged")
        assert b"* 1 EXISTS" in reply[0]
        assert re.search(rb"OK \[APPENDUID \d+ 1\]", reply[-1])
        fetched = _joined(await c.command("FETCH 1 (FLAGS ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
        assert b'"Hello there"' in fetched and b"\\Flagged" in fetched
        assert b"Subject: Hello there" in fetched
        body = _joined(await c.command("UID FETCH 1 (BODY[TEXT])"))
        assert b"The body text." in body and b"\\Seen" in body  # BODY[] sets \Seen and reports FLAGS
        assert b"* SEARCH 1" in _joined(await c.command("SEARCH SUBJECT hello"))
        assert b"* SEARCH\r\n" in _joined(await c.command("SEARCH UNSEEN"))
        es = _joined(await c.command("UID SEARCH RETURN (MIN MAX COUNT) ALL"))
        assert b"MIN 1 MAX 1 COUNT 1" in es
        stored = _joined(await c.command("STORE 1 +FLAGS (\\Deleted)"))
        assert b"* 1 FETCH (FLAGS (" in stored and b"\\Deleted" in stored
        assert b"* 1 EXPUNGE" in _joined(await c.command("EXPUNGE"))
        status = _joined(await c.command("STATUS INBOX (MESSAGES UIDNEXT UNSEEN)"))
        assert b'* STATUS "INBOX" (MESSAGES 0 UIDNEXT 2 UNSEEN 0)' in status
        assert (await c.command("LOGOUT"))[0] == b"* BYE Logging out\r\n"


@trio_test
async def test_copy_move_create_rename_quota_namespace() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        assert b"OK" in (await c.command("CREATE Projects/2026"))[-1]
        assert b"[ALREADYEXISTS]" in (await c.command("CREATE Projects/2026"))[-1]
        tree = _joined(await c.command('LIST "" "Projects%"'))
        assert b'(\\HasChildren) "/" "Projects"' in tree and b"Projects/2026" not in tree
        await c.command("SELECT INBOX")
        await _append(c)
        await _append(c)
        copied = (await c.command("COPY 1 Projects/2026"))[-1]
        assert re.search(rb"OK \[COPYUID \d+ 1 1\]", copied)
        assert b"[TRYCREATE]" in (await c.command("COPY 1 Nowhere"))[-1]
        moved = _joined(await c.command("UID MOVE 2 Archive"))
        assert b"* OK [COPYUID" in moved and b"* 2 EXPUNGE" in moved
        assert b"OK" in (await c.command("RENAME Projects/2026 Projects/2027"))[-1]
        status = _joined(await c.command("STATUS Projects/2027 (MESSAGES)"))
        assert b"(MESSAGES 1)" in status
        assert b"[NONEXISTENT]" in (await c.command("STATUS Projects/2026 (MESSAGES)"))[-1]
        quota = _joined(await c.command("GETQUOTAROOT INBOX"))
        assert b'* QUOTAROOT "INBOX" ""' in quota and b'* QUOTA "" ' in quota
        assert b'* NAMESPACE (("" "/")) NIL NIL' in _joined(await c.command("NAMESPACE"))
        listing = _joined(await c.command('LIST "" "*" RETURN (STATUS (MESSAGES UIDNEXT))'))
        assert b'* STATUS "Archive" (MESSAGES 1 UIDNEXT 2)' in listing
        special = _joined(await c.command('LIST (SPECIAL-USE) "" "*"'))
        assert b"INBOX" not in special and b"\\Sent" in special


@trio_test
async def test_two_sessions_see_each_others_changes_and_expunge_is_deferred() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as a, connected(ports[0]) as b:
        await a.login()
        await b.login()
        await a.command("SELECT INBOX")
        await b.command("SELECT INBOX")
        await _append(b)
        await _append(b)
        await trio.sleep(0.05)
        assert b"* 2 EXISTS" in _joined(await a.command("NOOP"))
        await b.command("STORE 2 +FLAGS (\\Flagged)")
        await trio.sleep(0.05)
        assert re.search(
            rb"\* 2 FETCH \(FLAGS \(\\Flagged\)\)", _joined(await a.command("NOOP"))
        )  # UID only with CONDSTORE
        await b.command("STORE 1 +FLAGS.SILENT (\\Deleted)")
        assert b"* 1 EXPUNGE" in _joined(await b.command("EXPUNGE"))
        await trio.sleep(0.05)
        # A still numbers the expunged message 1: no EXPUNGE while it FETCHes.
        during = await a.command("FETCH 1:2 (UID FLAGS)")
        assert not any(line.endswith(b" EXPUNGE\r\n") for line in during)
        assert b"* 2 FETCH (UID 2" in _joined(during)
        assert b"NO [EXPUNGEISSUED]" in during[-1]
        during_store = await a.command("STORE 2 +FLAGS (\\Seen)")
        assert not any(line.endswith(b" EXPUNGE\r\n") for line in during_store)
        assert b"* 2 FETCH" in _joined(during_store)
        assert not any(line.endswith(b" EXPUNGE\r\n") for line in await a.command("SEARCH ALL"))
        after = _joined(await a.command("NOOP"))
        assert b"* 1 EXPUNGE" in after
        assert b"* 1 FETCH (UID 2" in _joined(await a.command("FETCH 1 (UID)"))


@trio_test
async def test_idle_reports_new_message_quickly_and_keepalive() -> None:
    settings = ServerSettings(allow_plaintext_login=True, tls_available=False, idle_keepalive=0.3)
    async with running_server(settings=settings) as (_, ports, _store):  # noqa: SIM117 - ports needed below
        async with connected(ports[0]) as a, connected(ports[0]) as b:
            await a.login()
            await b.login()
            await a.command("SELECT INBOX")
            await a.send(b"i1 IDLE\r\n")
            assert (await a.read_line()).startswith(b"+ ")
            assert await a.read_line() == b"* OK Still here\r\n"
            latencies = []
            for n in range(1, 6):
                start = time.perf_counter()
                await _append(b)
                line = await a.read_line()
                while b"EXISTS" not in line:
                    line = await a.read_line()
                latencies.append(time.perf_counter() - start)
                assert line == b"* %d EXISTS\r\n" % n
            await a.send(b"DONE\r\n")
            assert (await a.until_tagged("i1"))[-1] == b"i1 OK IDLE terminated\r\n"
            print(f"IDLE EXISTS latency (fake store) max {max(latencies) * 1000:.1f} ms")
            assert max(latencies) < 0.5


@trio_test
async def test_too_many_bad_commands_end_the_connection() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        for _ in range(9):
            assert b" BAD " in (await c.command("FROBNICATE"))[-1]
        lines = await c.command("FROBNICATE")
        assert lines[-1].startswith(b"t10 BAD")
        assert await c.read_line() == b"* BYE Too many invalid commands\r\n"


class _BrokenStore(FakeStore):
    async def list_mailboxes(
        self, user: str, *, with_status: bool = False, subscribed_only: bool = False
    ) -> Sequence[MailboxInfo]:
        raise RuntimeError("boom")


@trio_test
async def test_handler_exception_answers_serverbug_and_connection_lives() -> None:
    store = _BrokenStore()
    store.create_user("alice", "secret")
    async with running_server(store=store) as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        assert (await c.command('LIST "" "*"'))[-1].startswith(b"t2 NO [SERVERBUG]")
        assert b"OK" in (await c.command("NOOP"))[-1]


@trio_test
async def test_fenced_writer_answers_unavailable_and_closes_everyone() -> None:
    async with running_server() as (_, ports, store), connected(ports[0]) as a, connected(ports[0]) as b:
        assert isinstance(store, FakeStore)
        await a.login()
        await b.login()
        await a.command("SELECT INBOX")
        store.fence(2)
        reply = await _append(a)
        assert reply[-1].startswith(b"t3 NO [UNAVAILABLE]")
        assert (await a.read_line()).startswith(b"* BYE [UNAVAILABLE]")
        assert (await b.read_line()).startswith(b"* BYE [UNAVAILABLE]")


@trio_test
async def test_drain_says_bye_server_moving() -> None:
    async with running_server() as (server, ports, _store), connected(ports[0]) as a:
        await a.login()
        await server.drain()
        assert await a.read_line() == b"* BYE [UNAVAILABLE] server moving, reconnect\r\n"


class _SlowAppendStore(FakeStore):
    """Commits an APPEND, then holds its answer until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.committed = trio.Event()
        self.answer = trio.Event()

    async def multi_append(self, user: str, mailbox: str, messages: Sequence[tuple[AppendSpec, bytes]]) -> AppendResult:
        result = await super().multi_append(user, mailbox, messages)
        self.committed.set()
        await self.answer.wait()
        return result


@trio_test
async def test_drain_lets_a_committed_append_answer_before_bye() -> None:
    """Regression (chaos switchover): BYE used to cut an APPEND the store had already committed."""
    store = _SlowAppendStore()
    store.create_user("alice", "secret")
    async with running_server(store=store) as (server, ports, _), connected(ports[0]) as a:
        await a.login()
        await a.send(b"t9 APPEND INBOX () {%d+}\r\n" % len(MSG) + MSG + b"\r\n")
        await store.committed.wait()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.drain)
            await trio.sleep(0.05)
            store.answer.set()
        tagged = await a.read_line()
        assert tagged.startswith(b"t9 OK [APPENDUID "), tagged
        assert await a.read_line() == b"* BYE [UNAVAILABLE] server moving, reconnect\r\n"


@trio_test
async def test_failed_logins_are_delayed_more_and_more() -> None:
    settings = ServerSettings(allow_plaintext_login=True, tls_available=False, login_delay_base=0.1)
    async with running_server(settings=settings) as (_, ports, _store), connected(ports[0]) as c:
        delays = []
        for _ in range(3):
            start = time.perf_counter()
            reply = await c.command('LOGIN alice "wrong"')
            delays.append(time.perf_counter() - start)
            assert b"NO [AUTHENTICATIONFAILED]" in reply[-1]
        assert delays[0] >= 0.1 and delays[1] >= 0.2 and delays[2] >= 0.4
        await c.login()


@trio_test
async def test_append_over_limit_refused_before_data() -> None:
    settings = ServerSettings(allow_plaintext_login=True, tls_available=False, append_limit=1000)
    async with running_server(settings=settings) as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        await c.send(b"a1 APPEND INBOX {5000}\r\n")
        line = await c.read_line()
        assert line.startswith(b"a1 NO [TOOBIG]")  # no "+" continuation: the data is never read
        assert b"APPENDLIMIT=1000" in _joined(await c.command("CAPABILITY"))


@trio_test
async def test_per_user_connection_cap() -> None:
    settings = ServerSettings(allow_plaintext_login=True, tls_available=False, connections_per_user=2)
    async with running_server(settings=settings) as (_, ports, _store):  # noqa: SIM117 - ports needed below
        async with connected(ports[0]) as a, connected(ports[0]) as b, connected(ports[0]) as c:
            await a.login()
            await b.login()
            assert b"NO [LIMIT]" in (await c.command('LOGIN alice "secret"'))[-1]
            await a.command("LOGOUT")
            await trio.sleep(0.05)
            await c.login()


@trio_test
async def test_preauth_autologout() -> None:
    settings = ServerSettings(allow_plaintext_login=True, tls_available=False, preauth_timeout=0.2)
    async with running_server(settings=settings) as (_, ports, _store), connected(ports[0]) as c:
        assert (await c.read_line()).startswith(b"* BYE Autologout")


@trio_test
async def test_condstore_and_qresync() -> None:
    async with running_server() as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        assert b"* ENABLED QRESYNC" in _joined(await c.command("ENABLE QRESYNC"))
        sel = _joined(await c.command("SELECT INBOX"))
        uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", sel).group(1))  # type: ignore[union-attr]
        for _ in range(3):
            await _append(c)
        fetched = _joined(await c.command("FETCH 1:3 (MODSEQ)"))
        modseqs = [int(m) for m in re.findall(rb"MODSEQ \((\d+)\)", fetched)]
        assert len(modseqs) == 3
        base = max(modseqs)
        unchanged = _joined(await c.command(f"STORE 1 (UNCHANGEDSINCE {base}) +FLAGS (\\Seen)"))
        assert b"MODSEQ (" in unchanged
        refused = (await c.command(f"STORE 1 (UNCHANGEDSINCE {base}) +FLAGS (\\Answered)"))[-1]
        assert b"[MODIFIED 1]" in refused
        await c.command("STORE 2 +FLAGS.SILENT (\\Deleted)")
        vanished = _joined(await c.command("EXPUNGE"))
        assert b"* VANISHED 2" in vanished
        changed = _joined(await c.command(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {base} VANISHED)"))
        assert b"* VANISHED (EARLIER) 2" in changed and b"UID 1" in changed and b"UID 3" not in changed
        await c.command("UNSELECT")
        resync = _joined(await c.command(f"SELECT INBOX (QRESYNC ({uidvalidity} {base}))"))
        assert b"* VANISHED (EARLIER) 2" in resync
        assert re.search(rb"\* 1 FETCH \(UID 1 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)", resync)


@trio_test
async def test_one_watch_feed_per_mailbox_shared_by_sessions() -> None:
    async with running_server() as (server, ports, _store), connected(ports[0]) as a, connected(ports[0]) as b:
        await a.login()
        await b.login()
        await a.command("SELECT INBOX")
        await b.command("SELECT INBOX")
        assert server.ctx.hub.active_feeds == 1
        await a.command("SELECT Sent")
        assert server.ctx.hub.active_feeds == 2
        await a.command("UNSELECT")
        await b.command("CLOSE")
        assert server.ctx.hub.active_feeds == 0
        assert server.ctx.hub.open_feeds == 2  # lingering for the next SELECT
        await a.command("SELECT INBOX")
        assert server.ctx.hub.open_feeds == 2 and server.ctx.hub.active_feeds == 1


@trio_test
async def test_one_store_call_per_command_and_cached_envelopes() -> None:
    async with running_server() as (_, ports, store), connected(ports[0]) as c:
        assert isinstance(store, FakeStore)
        await c.login()
        await c.command("SELECT INBOX")
        for i in range(60):
            await _append(c, MSG.replace(b"Hello there", b"Hello %d" % i))
        await trio.sleep(0.05)  # the feed's \\Recent claims for the new mail settle
        await c.command("NOOP")
        before = store.calls
        first_lines = await c.command("FETCH 11:60 (FLAGS ENVELOPE)")
        first = _joined(first_lines)
        assert store.calls - before == 1
        assert first.count(b" FETCH (") == 50 and b'"Hello 59"' in first
        assert _asked_header(store)
        second_lines = await c.command("FETCH 11:60 (FLAGS ENVELOPE)")
        assert not _asked_header(store)  # every ENVELOPE came from the cache
        assert second_lines[:-1] == first_lines[:-1]
        before = store.calls
        await c.command("STORE 1:60 +FLAGS (\\Flagged)")
        await c.command("UID SEARCH FLAGGED SUBJECT hello")
        assert store.calls - before == 2


@trio_test
async def test_selected_mailbox_deleted_elsewhere_or_feed_lost_ends_with_bye() -> None:
    async with running_server() as (_, ports, store), connected(ports[0]) as a, connected(ports[0]) as b:
        assert isinstance(store, FakeStore)
        await a.login()
        await b.login()
        await a.command("CREATE Doomed")
        await a.command("SELECT Doomed")
        await b.command("DELETE Doomed")
        await trio.sleep(0.05)
        lines = await a.command("NOOP")
        assert b"* BYE [UNAVAILABLE] Selected mailbox was deleted or renamed\r\n" in lines
    async with running_server() as (_, ports, store), connected(ports[0]) as c:
        assert isinstance(store, FakeStore)
        await c.login()
        await c.command("SELECT INBOX")
        store.break_watches()
        await trio.sleep(0.05)
        assert b"* BYE [UNAVAILABLE] Lost the mailbox's change feed" in _joined(await c.command("NOOP"))


@trio_test
async def test_international_mailbox_names_round_trip_in_modified_utf7() -> None:
    async with running_server() as (_, ports, store), connected(ports[0]) as c:
        assert isinstance(store, FakeStore)
        await c.login()
        assert (await c.command('CREATE "Entw&APw-rfe/&ZeVnLIqe-"'))[-1].startswith(b"t2 OK")
        names = {m.name for m in await store.list_mailboxes("alice")}
        assert "Entwürfe/日本語" in names and "Entwürfe" in names
        listing = _joined(await c.command('LIST "" "Entw&APw-rfe/*"'))
        assert b'"/" "Entw&APw-rfe/&ZeVnLIqe-"' in listing
        assert b"(MESSAGES 0)" in _joined(await c.command('STATUS "Entw&APw-rfe/&ZeVnLIqe-" (MESSAGES)'))


@trio_test
async def test_multiappend_trycreate_and_overquota() -> None:
    store = FakeStore()
    store.create_user("alice", "secret", quota=1000)
    async with running_server(store=store) as (_, ports, _store), connected(ports[0]) as c:
        await c.login()
        one, two = MSG, MSG.replace(b"Hello there", b"Second")
        cmd = b"APPEND Drafts (\\Seen) {%d+}\r\n%s (\\Flagged) {%d+}\r\n%s" % (len(one), one, len(two), two)
        reply = await c.command(cmd)
        assert re.search(rb"OK \[APPENDUID \d+ 1:2\]", reply[-1])
        await c.command("SELECT Drafts")
        flags = _joined(await c.command("FETCH 1:2 (FLAGS)"))
        assert b"* 1 FETCH (FLAGS (\\Seen \\Recent))" in flags and b"* 2 FETCH (FLAGS (\\Flagged \\Recent))" in flags
        assert b"NO [TRYCREATE]" in (await _append_to(c, "Nowhere"))[-1]
        big = b"Subject: big\r\n\r\n" + b"x" * 900
        assert b"NO [OVERQUOTA]" in (await _append_to(c, "INBOX", big))[-1]
        assert b"STORAGE " in _joined(await c.command('GETQUOTA ""'))


async def _append_to(client: RawClient, mailbox: str, data: bytes = MSG) -> list[bytes]:
    return await client.command(f"APPEND {mailbox} {{{len(data)}+}}\r\n".encode() + data)


@trio_test
async def test_idle_timeout_and_authenticated_autologout() -> None:
    settings = ServerSettings(
        allow_plaintext_login=True, tls_available=False, idle_timeout=0.4, idle_keepalive=10, autologout=0.4
    )
    async with running_server(settings=settings) as (_, ports, _store):  # noqa: SIM117 - ports needed below
        async with connected(ports[0]) as a, connected(ports[0]) as b:
            await a.login()
            await a.command("SELECT INBOX")
            await a.send(b"i1 IDLE\r\n")
            assert (await a.read_line()).startswith(b"+ ")
            assert (await a.read_line()).startswith(b"* BYE [UNAVAILABLE] IDLE timed out")
            await b.login()
            assert (await b.read_line()).startswith(b"* BYE Autologout")


@trio_test
async def test_multiappend_total_is_bounded() -> None:
    settings = ServerSettings(
        allow_plaintext_login=True, tls_available=False, append_limit=1000, append_total_limit=2500
    )
    async with running_server(settings=settings) as (_, ports, store), connected(ports[0]) as c:
        assert isinstance(store, FakeStore)
        await c.login()
        part = b"Subject: part\r\n\r\n" + b"x" * 900
        cmd = b"APPEND INBOX" + b"".join(b" {%d+}\r\n%s" % (len(part), part) for _ in range(4))
        reply = await c.command(cmd)
        assert reply[-1].startswith(b"t2 NO [TOOBIG]")
        assert (await store.status("alice", "INBOX")).status.messages == 0  # type: ignore[union-attr]
        assert b"OK" in (await c.command("NOOP"))[-1]


@trio_test
async def test_connections_over_the_process_limit_get_bye() -> None:
    settings = ServerSettings(allow_plaintext_login=True, tls_available=False, max_connections=2)
    async with running_server(settings=settings) as (_, ports, _store):  # noqa: SIM117 - ports needed below
        async with connected(ports[0]) as a, connected(ports[0]) as b:
            await a.login()
            await b.login()
            stream = await trio.open_tcp_stream("127.0.0.1", ports[0])
            third = RawClient(stream)
            assert (await third.read_line()).startswith(b"* BYE [UNAVAILABLE] Too many connections")
            await stream.aclose()


def test_store_disk_full_is_a_temporary_no_not_a_serverbug() -> None:

    class FullDisk(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.RESOURCE_EXHAUSTED

        def details(self) -> str:
            return "storage: the mail store's disk is full (mdb_txn_commit: No space left on device)"

    error = store_error(FullDisk())
    assert error.kind is StoreErrorKind.STORAGE_FULL
    reply = reply_for(error)
    assert reply.status == b"NO"
    assert reply.text.startswith(b"[UNAVAILABLE] ")
