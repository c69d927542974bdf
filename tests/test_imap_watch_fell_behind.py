"""A session whose mailbox changes faster than it reads the change feed keeps its
connection (issue 17: imapd cut a session off during a fast import, "watch
subscriber of mailbox N fell behind"). The hub drops what it queued for that
session and the session resynchronises from the store at its next command or
IDLE turn: every new message once, EXPUNGEs in its own numbering (VANISHED with
QRESYNC), EXISTS never backwards, and afterwards the same view as a fresh session.

The per-session buffer is lowered through ServerSettings.watch_buffer so a few
hundred messages overflow it; `hub.resyncs` shows the overflow path was taken."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from imapd.server import ImapServer
from imapd.session.context import ServerSettings
from imapd.store_client import AppendSpec, FlagMode
from imapd.store_fake import FakeStore
from tests.imap_server_wire import RawClient, connected, running_server, trio_test

BUFFER = 8
USER = "alice"


def _settings() -> ServerSettings:
    return ServerSettings(allow_plaintext_login=True, tls_available=False, watch_buffer=BUFFER, notify_buffer=BUFFER)


async def _put(store: FakeStore, count: int, mailbox: str = "INBOX") -> None:
    """`count` messages into `mailbox`, one commit (one feed event) each: an importer."""
    for i in range(count):
        body = b"From: list@example.com\r\nSubject: burst %d\r\n\r\nbody %d\r\n" % (i, i)
        await store.multi_append(USER, mailbox, [(AppendSpec(), body)])


async def _expunge(store: FakeStore, mailbox_id: int, uid_set: str) -> None:
    await store.store_flags(USER, mailbox_id, uid_set, FlagMode.ADD, ["\\Deleted"])
    await store.expunge(USER, mailbox_id, uid_set)


async def _inbox_id(store: FakeStore) -> int:
    return (await store.select(USER, "INBOX")).mailbox.mailbox_id


async def _settle() -> None:
    """Let the hub deliver everything the store published (into the sessions' channels)."""
    await trio.testing.wait_all_tasks_blocked(cushion=0.01)


_FETCH = re.compile(rb"^\* (\d+) FETCH \((.*)\)\r\n$")


def _view(lines: list[bytes]) -> list[tuple[int, int, bytes, int]]:
    """(seq, UID, FLAGS without \\Recent, MODSEQ) of each FETCH line of `FETCH 1:* (UID FLAGS MODSEQ)`."""
    out = []
    for line in lines:
        m = _FETCH.match(line)
        if m is None:
            continue
        items = m.group(2)
        uid = re.search(rb"UID (\d+)", items)
        flags = re.search(rb"FLAGS \(([^)]*)\)", items)
        modseq = re.search(rb"MODSEQ \((\d+)\)", items)
        assert uid and flags and modseq, line
        kept = b" ".join(sorted(f for f in flags.group(1).split() if f != b"\\Recent"))
        out.append((int(m.group(1)), int(uid.group(1)), kept, int(modseq.group(1))))
    return out


def _untagged_state(before: list[int], lines: list[bytes], *, qresync: bool) -> list[int]:
    """Apply a response's EXPUNGE/VANISHED/EXISTS to the UID list the client held, as a client
    does, checking each step: an EXPUNGE names a message it has, EXISTS never goes backwards.
    New UIDs are unknown to the client until it fetches them: they are marked 0."""
    uids = list(before)
    for line in lines:
        if m := re.match(rb"^\* (\d+) EXPUNGE\r\n$", line):
            assert not qresync, line
            seq = int(m.group(1))
            assert 1 <= seq <= len(uids), (line, len(uids))
            del uids[seq - 1]
        elif m := re.match(rb"^\* VANISHED ([\d:,]+)\r\n$", line):
            assert qresync, line
            gone: set[int] = set()
            for part in m.group(1).split(b","):
                lo, _, hi = part.partition(b":")
                gone.update(range(int(lo), int(hi or lo) + 1))
            uids = [u for u in uids if u not in gone]
        elif m := re.match(rb"^\* (\d+) EXISTS\r\n$", line):
            exists = int(m.group(1))
            assert exists >= len(uids), (line, len(uids))  # never backwards
            uids.extend([0] * (exists - len(uids)))
    return uids


async def _fetch_all(client: RawClient) -> list[tuple[int, int, bytes, int]]:
    lines = await client.command("FETCH 1:* (UID FLAGS MODSEQ)")
    assert lines[-1].split()[1] == b"OK", lines
    return _view(lines)


async def _fresh_view(port: int) -> list[tuple[int, int, bytes, int]]:
    async with connected(port) as fresh:
        await fresh.login()
        assert (await fresh.command("EXAMINE INBOX"))[-1].split()[1] == b"OK"
        return await _fetch_all(fresh)


@asynccontextmanager
async def _server() -> AsyncIterator[tuple[ImapServer, int, FakeStore]]:
    async with running_server(settings=_settings()) as (server, ports, store):
        assert isinstance(store, FakeStore)
        yield server, ports[0], store


async def _selected(client: RawClient, *, qresync: bool) -> None:
    await client.login()
    if qresync:
        assert (await client.command("ENABLE QRESYNC"))[-1].split()[1] == b"OK"
    else:
        assert (await client.command("ENABLE CONDSTORE"))[-1].split()[1] == b"OK"
    assert (await client.command("SELECT INBOX"))[-1].split()[1] == b"OK"


def _no_bye(lines: list[bytes]) -> None:
    assert not any(line.startswith(b"* BYE") for line in lines), lines
    assert lines[-1].split()[1] == b"OK", lines[-1]


@trio_test
async def test_a_session_that_falls_behind_an_import_keeps_its_connection_and_sees_every_message() -> None:
    async with _server() as (server, port, store), connected(port) as client:
        await _put(store, 5)
        await _selected(client, qresync=False)
        before = [uid for _, uid, _, _ in await _fetch_all(client)]
        assert before == [1, 2, 3, 4, 5]

        await _put(store, 40 * BUFFER)  # the session sends nothing meanwhile: its channel overflows
        await _settle()
        lines = await client.command("NOOP")
        _no_bye(lines)
        assert server.ctx.hub.resyncs >= 1
        state = _untagged_state(before, lines, qresync=False)
        assert len(state) == 5 + 40 * BUFFER

        mine = await _fetch_all(client)
        assert mine == await _fresh_view(port)
        uids = [uid for _, uid, _, _ in mine]
        assert uids == sorted(set(uids)) and len(uids) == 5 + 40 * BUFFER  # each UID once

        # The feed goes on after the resync: three more, announced as usual.
        await _put(store, 3)
        await _settle()
        lines = await client.command("NOOP")
        _no_bye(lines)
        assert _untagged_state(uids, lines, qresync=False)[-3:] == [0, 0, 0]
        assert await _fetch_all(client) == await _fresh_view(port)


async def _burst_with_expunges(store: FakeStore) -> None:
    """New mail, expunges of messages the session knows and of ones it never saw, a flag change."""
    mailbox_id = await _inbox_id(store)
    await _put(store, 10 * BUFFER)
    await _expunge(store, mailbox_id, "3:5,9")  # known to the session
    await _expunge(store, mailbox_id, "30:40")  # new since, never announced
    await store.store_flags(USER, mailbox_id, "1", FlagMode.ADD, ["\\Flagged"])
    await _put(store, 10 * BUFFER)
    await _expunge(store, mailbox_id, "2")


@trio_test
async def test_expunges_during_the_burst_come_as_expunge_responses_in_the_sessions_numbering() -> None:
    async with _server() as (server, port, store), connected(port) as client:
        await _put(store, 12)
        await _selected(client, qresync=False)
        before = [uid for _, uid, _, _ in await _fetch_all(client)]

        await _burst_with_expunges(store)
        await _settle()
        lines = await client.command("NOOP")
        _no_bye(lines)
        assert server.ctx.hub.resyncs >= 1
        state = _untagged_state(before, lines, qresync=False)
        fresh = await _fresh_view(port)
        assert len(state) == len(fresh)
        # What the client still holds is exactly what is left of what it knew, in order.
        known = [u for u in state if u]
        assert known == [u for u in before if u not in {2, 3, 4, 5, 9}]
        assert any(re.match(rb"^\* 1 FETCH \(.*FLAGS \(\\Flagged", line) for line in lines), lines
        assert await _fetch_all(client) == fresh
        uids = [uid for _, uid, _, _ in fresh]
        assert not {2, 3, 4, 5, 9} & set(uids) and not set(range(30, 41)) & set(uids)


@trio_test
async def test_with_qresync_a_session_that_fell_behind_gets_vanished_for_what_it_knew() -> None:
    async with _server() as (server, port, store), connected(port) as client:
        await _put(store, 12)
        await _selected(client, qresync=True)
        before = [uid for _, uid, _, _ in await _fetch_all(client)]

        await _burst_with_expunges(store)
        await _settle()
        lines = await client.command("NOOP")
        _no_bye(lines)
        assert server.ctx.hub.resyncs >= 1
        assert not any(line.endswith(b" EXPUNGE\r\n") for line in lines), lines
        vanished = [line for line in lines if line.startswith(b"* VANISHED ")]
        assert vanished and all(b"30" not in v for v in vanished), vanished  # only what it knew
        state = _untagged_state(before, lines, qresync=True)
        fresh = await _fresh_view(port)
        assert len(state) == len(fresh)
        assert await _fetch_all(client) == fresh
        # HIGHESTMODSEQ: the session's newest MODSEQ is the mailbox's.
        status = await client.command("STATUS INBOX (HIGHESTMODSEQ)")
        highest = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"".join(status)).group(1))  # type: ignore[union-attr]
        assert max(modseq for *_, modseq in fresh) <= highest


async def _slow_reader(port: int) -> RawClient:
    """A client on a small receive buffer: the server's writes to it block soon when it does not read."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", port))
    client = RawClient(trio.SocketStream(sock))
    assert (await client.read_line()).startswith(b"* OK")
    return client


@trio_test
async def test_an_idle_client_on_a_slow_link_is_resynchronised_not_cut_off() -> None:
    async with _server() as (server, port, store):
        client = await _slow_reader(port)
        try:
            await _put(store, 400)
            await _selected(client, qresync=False)
            before = [uid for _, uid, _, _ in await _fetch_all(client)]
            mailbox_id = await _inbox_id(store)
            await client.send(b"i1 IDLE\r\n")
            assert (await client.read_line()).startswith(b"+ ")

            # Flag storms over all 400 (a FETCH line each, far more than the socket holds while
            # the client reads nothing), then new mail and an expunge.
            for i in range(6 * BUFFER):
                mode = FlagMode.ADD if i % 2 == 0 else FlagMode.REMOVE
                await store.store_flags(USER, mailbox_id, "1:*", mode, ["\\Seen"])
            await _put(store, 5 * BUFFER)
            await _expunge(store, mailbox_id, "7")
            await _settle()

            await client.send(b"DONE\r\n")
            lines = await client.until_tagged("i1")
            _no_bye(lines)
            lines += await client.command("NOOP")
            _no_bye(lines)
            assert server.ctx.hub.resyncs >= 1
            state = _untagged_state(before, lines, qresync=False)
            fresh = await _fresh_view(port)
            assert len(state) == len(fresh) == 400 + 5 * BUFFER - 1
            assert await _fetch_all(client) == fresh
        finally:
            await client.stream.aclose()


_NOTIFY_ALL = (
    b"NOTIFY SET STATUS (SELECTED (MessageNew MessageExpunge)) "
    b"(PERSONAL (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange))"
)


def _status(lines: list[bytes], name: bytes) -> dict[bytes, int]:
    """The items of the last STATUS notification for `name` ({} if none)."""
    items: dict[bytes, int] = {}
    for line in lines:
        m = re.match(rb"^\* STATUS \"?" + re.escape(name) + rb"\"? \((.*)\)\r\n$", line)
        if m:
            words = m.group(1).split()
            items = {words[i]: int(words[i + 1]) for i in range(0, len(words), 2)}
    return items


@trio_test
async def test_notify_that_falls_behind_an_import_keeps_notifying_what_changed() -> None:
    """RFC 5465 5.8 lets a server give up ([NOTIFICATIONOVERFLOW], NOTIFY off); imapd instead
    rebuilds what it owes the client from one listing of the account when its feed overflowed."""
    async with _server() as (server, port, store), connected(port) as client:
        await _put(store, 2, "Sent")
        await client.login()
        assert (await client.command("SELECT INBOX"))[-1].split()[1] == b"OK"
        lines = await client.command(_NOTIFY_ALL)
        assert lines[-1].split()[1] == b"OK" and _status(lines, b"Sent")[b"MESSAGES"] == 2

        await store.create_mailbox(USER, "Lists")
        await _put(store, 20 * BUFFER, "Lists")  # the account feed overflows the session's channel
        await _put(store, 3, "Sent")
        await store.delete_mailbox(USER, "Junk")
        await store.subscribe(USER, "Lists", True)
        await _put(store, 2, "INBOX")  # the selected mailbox: EXISTS, as ever
        await _settle()
        lines = await client.command("NOOP")
        _no_bye(lines)
        assert not any(b"NOTIFICATIONOVERFLOW" in line for line in lines), lines
        assert server.ctx.hub.accounts.resyncs >= 1
        assert _status(lines, b"Lists")[b"MESSAGES"] == 20 * BUFFER
        assert _status(lines, b"Sent")[b"MESSAGES"] == 5
        assert b'* LIST () "/" "Lists"\r\n' in lines
        assert b'* LIST (\\NonExistent) "/" "Junk"\r\n' in lines
        assert b'* LIST (\\Subscribed) "/" "Lists"\r\n' in lines
        assert b"* 2 EXISTS\r\n" in lines
        assert not _status(lines, b"INBOX")  # the selected mailbox gets no STATUS
        assert sum(line.startswith(b"* LIST") for line in lines) == 3  # each change once

        # NOTIFY is still on, and the feed flows again.
        await _put(store, 1, "Sent")
        await _settle()
        lines = await client.command("NOOP")
        _no_bye(lines)
        assert _status(lines, b"Sent")[b"MESSAGES"] == 6 and not _status(lines, b"Lists")


@trio_test
async def test_a_notify_resync_reports_only_the_mailboxes_that_changed() -> None:
    """RFC 5465 5.8: after lost events the server sends STATUS for the mailboxes whose state
    may have changed. A NOTIFY SET without STATUS tells the client nothing, but what the SET
    listed is the baseline: a mailbox never reported that did not change gets no STATUS (it
    got one, for every watched mailbox, before)."""
    async with _server() as (server, port, store), connected(port) as client:
        await _put(store, 2, "Sent")
        await store.create_mailbox(USER, "Old")
        await _put(store, 4, "Old")
        await store.create_mailbox(USER, "Quiet")
        await _put(store, 3, "Quiet")
        await client.login()
        assert (await client.command("SELECT INBOX"))[-1].split()[1] == b"OK"
        lines = await client.command(_NOTIFY_ALL.replace(b"SET STATUS", b"SET"))
        assert lines[-1].split()[1] == b"OK" and not any(line.startswith(b"* STATUS") for line in lines)

        await store.create_mailbox(USER, "Lists")
        await _put(store, 20 * BUFFER, "Lists")  # the account feed overflows the session's channel
        await _put(store, 1, "Old")
        await store.create_mailbox(USER, "Empty")
        await _settle()
        lines = await client.command("NOOP")
        _no_bye(lines)
        assert server.ctx.hub.accounts.resyncs >= 1
        assert _status(lines, b"Lists")[b"MESSAGES"] == 20 * BUFFER
        assert _status(lines, b"Old")[b"MESSAGES"] == 5
        reported = sorted(re.findall(rb"^\* STATUS \"?([^\" ]+)", b"".join(lines), re.MULTILINE))
        assert reported == [b"Lists", b"Old"], lines  # not Sent, Quiet, Drafts, Trash, nor the empty new one
        assert b'* LIST () "/" "Empty"\r\n' in lines
