"""The trio LMTP server against the in-memory MailDrop (no store process)."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Awaitable, Callable, Sequence

import pytest
import trio
import trio.testing

import lmtpd.server
from lmtpd.delivery import DeliveryResult, MessageSource, Recipient, Resolution
from lmtpd.memory_drop import MemoryMailDrop, MemorySession
from lmtpd.resolution_cache import ResolutionCache
from lmtpd.server import LmtpdOptions, handle_connection, serve

OPTS = LmtpdOptions(max_message_size=10_000, hostname="mx.test")


def make_drop() -> MemoryMailDrop:
    drop = MemoryMailDrop(max_message_size=20_000)
    drop.add_user("alice", "alice@d.test", "postmaster@d.test")
    drop.add_user("bob", "bob@d.test", quota=300)
    return drop


async def read_replies(stream: trio.abc.Stream, count: int) -> list[bytes]:
    """`count` complete replies (multi-line ones joined)."""
    buf = b""
    out: list[bytes] = []
    while len(out) < count:
        with trio.fail_after(5):
            data = await stream.receive_some(65536)
        assert data, f"connection closed after {out!r}"
        buf += data
        while True:
            end = _reply_end(buf)
            if end < 0:
                break
            out.append(buf[:end])
            buf = buf[end:]
    assert buf == b""
    return out


def _reply_end(buf: bytes) -> int:
    pos = 0
    while True:
        nl = buf.find(b"\r\n", pos)
        if nl < 0:
            return -1
        if buf[pos + 3 : pos + 4] == b" ":
            return nl + 2
        pos = nl + 2


def run_session(
    drop: MemoryMailDrop, script: Callable[[trio.abc.Stream], Awaitable[None]], opts: LmtpdOptions = OPTS
) -> None:
    async def main() -> None:
        client, server = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handle_connection, server, opts, drop)
            await script(client)
            await client.aclose()

    trio.run(main)


def test_pipelined_delivery_to_several_recipients() -> None:
    drop = make_drop()

    async def script(c: trio.abc.Stream) -> None:
        assert (await read_replies(c, 1))[0].startswith(b"220 mx.test ")
        await c.send_all(
            b"LHLO client\r\nMAIL FROM:<sender@x.test> BODY=8BITMIME\r\n"
            b"RCPT TO:<Alice+lists@D.test>\r\nRCPT TO:<nobody@d.test>\r\nRCPT TO:<postmaster@d.test>\r\nDATA\r\n"
        )
        lhlo, mail, r1, r2, r3, data = await read_replies(c, 6)
        assert lhlo == (
            b"250-mx.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE 10000\r\n"
        )
        assert mail.startswith(b"250 2.1.0")
        assert r1.startswith(b"250 2.1.5")
        assert r2 == b"550 5.1.1 <nobody@d.test>: no such user\r\n"
        assert r3.startswith(b"250 2.1.5")
        assert data.startswith(b"354 ")
        await c.send_all(b"Subject: hi\n\n..dot\r\nbody \xc3\xa9\r\n.\r\nQUIT\r\n")
        first, second, bye = await read_replies(c, 3)
        assert first.startswith(b"250 2.0.0 <Alice+lists@D.test> delivered")
        assert second.startswith(b"250 2.0.0 <postmaster@d.test> delivered")
        assert bye == b"221 2.0.0 Bye\r\n"

    run_session(drop, script)
    assert drop.inboxes["alice"].messages == [
        b"Return-Path: <sender@x.test>\r\nDelivered-To: Alice+lists@D.test\r\n"
        b"Subject: hi\r\n\r\n.dot\r\nbody \xc3\xa9\r\n",
        b"Return-Path: <sender@x.test>\r\nDelivered-To: postmaster@d.test\r\n"
        b"Subject: hi\r\n\r\n.dot\r\nbody \xc3\xa9\r\n",
    ]


def test_size_limits_at_mail_and_at_data() -> None:
    drop = make_drop()

    async def script(c: trio.abc.Stream) -> None:
        await read_replies(c, 1)
        await c.send_all(
            b"LHLO c\r\nMAIL FROM:<> SIZE=10001\r\nMAIL FROM:<> SIZE=100\r\nRCPT TO:<alice@d.test>\r\nDATA\r\n"
        )
        _, big, ok, _, go = await read_replies(c, 5)
        assert big.startswith(b"552 5.3.4 ")
        assert ok.startswith(b"250 2.1.0")
        assert go.startswith(b"354")
        # Announced 100 bytes, sends 12,000: refused at DATA, session goes on.
        await c.send_all(b"x" * 500 + b"\r\n")
        for _ in range(23):
            await c.send_all(b"y" * 498 + b"\r\n")
        await c.send_all(b".\r\nNOOP\r\n")
        refused, noop = await read_replies(c, 2)
        assert refused.startswith(b"552 5.3.4 ")
        assert noop.startswith(b"250 ")

    run_session(drop, script)
    assert drop.inboxes["alice"].messages == []


def test_quota_epoch_and_unavailable_outcomes() -> None:
    drop = make_drop()

    async def script(c: trio.abc.Stream) -> None:
        await read_replies(c, 1)
        body = b"Subject: q\r\n\r\n" + b"z" * 300 + b"\r\n.\r\n"
        await c.send_all(b"LHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<bob@d.test>\r\nRCPT TO:<alice@d.test>\r\nDATA\r\n")
        await read_replies(c, 5)
        await c.send_all(body)
        bob, alice = await read_replies(c, 2)
        assert bob == b"552 5.2.2 <bob@d.test>: mailbox full\r\n"
        assert alice.startswith(b"250 2.0.0")
        drop.store_epoch += 1  # another writer took over: this lmtpd is fenced
        await c.send_all(b"MAIL FROM:<a@x>\r\nRCPT TO:<alice@d.test>\r\nDATA\r\n")
        await read_replies(c, 3)
        await c.send_all(b"x\r\n.\r\n")
        (fenced,) = await read_replies(c, 1)
        assert fenced.startswith(b"451 4.3.0 ")
        drop.available = False
        await c.send_all(b"MAIL FROM:<a@x>\r\nRCPT TO:<alice@d.test>\r\n")
        _, rcpt = await read_replies(c, 2)
        assert rcpt.startswith(b"451 4.3.0 ")

    run_session(drop, script)
    assert len(drop.inboxes["alice"].messages) == 1
    assert drop.inboxes["bob"].messages == []


def test_quota_tempfail_option() -> None:
    drop = make_drop()

    async def script(c: trio.abc.Stream) -> None:
        await read_replies(c, 1)
        await c.send_all(b"LHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<bob@d.test>\r\nDATA\r\n")
        await read_replies(c, 4)
        await c.send_all(b"z" * 400 + b"\r\n.\r\n")
        (bob,) = await read_replies(c, 1)
        assert bob == b"452 4.2.2 <bob@d.test>: mailbox full\r\n"

    run_session(drop, script, LmtpdOptions(max_message_size=10_000, hostname="mx.test", quota_tempfail=True))


def test_idle_timeout_closes_with_421() -> None:
    drop = make_drop()

    async def script(c: trio.abc.Stream) -> None:
        await read_replies(c, 1)
        (bye,) = await read_replies(c, 1)
        assert bye.startswith(b"421 4.4.2 ")
        with trio.fail_after(2):
            assert await c.receive_some(10) == b""

    run_session(drop, script, LmtpdOptions(max_message_size=100, hostname="mx.test", idle_timeout=0.2))


def test_stdlib_lmtp_client_over_tcp() -> None:
    """smtplib.LMTP, a real independent client, over a loopback socket."""
    drop = make_drop()
    message = b"Subject: std\r\n\r\n" + b"line\r\n" * 1000 + b".starts with dot\r\n"

    def client(port: int) -> dict[str, tuple[int, bytes]]:
        with smtplib.LMTP("127.0.0.1", port, timeout=10) as lmtp:
            code, _ = lmtp.ehlo("client.test")  # smtplib's LMTP class sends LHLO here
            assert code == 250
            assert lmtp.has_extn("pipelining")
            assert lmtp.has_extn("size")
            # smtplib reads one reply after DATA, so only one recipient may get that far.
            refused = lmtp.sendmail("s@x.test", ["alice@d.test", "nobody@d.test"], message)
        return refused

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(serve, OPTS, drop, "127.0.0.1", 0)
            port = listeners[0].socket.getsockname()[1]
            refused = await trio.to_thread.run_sync(client, port)
            assert list(refused) == ["nobody@d.test"]
            assert refused["nobody@d.test"][0] == 550
            nursery.cancel_scope.cancel()

    trio.run(main)
    (stored,) = drop.inboxes["alice"].messages
    assert stored.endswith(b"line\r\n.starts with dot\r\n")
    assert stored.startswith(b"Return-Path: <s@x.test>\r\nDelivered-To: alice@d.test\r\nSubject: std\r\n")


def test_resolution_cache_ttl_bound_and_case() -> None:
    cache = ResolutionCache(ttl=5.0, max_entries=2)
    cache.put("A@d.test", "alice", now=100.0)
    assert cache.get("a@D.TEST", now=104.9) == "alice"
    assert cache.get("a@d.test", now=105.0) is None  # expired
    cache.put("a@d.test", "alice", now=200.0)
    cache.put("b@d.test", "bob", now=200.0)
    cache.put("c@d.test", "carol", now=200.0)
    assert cache.get("a@d.test", now=201.0) is None  # evicted: bounded size
    assert cache.get("c@d.test", now=201.0) == "carol"
    off = ResolutionCache(ttl=0)
    off.put("a@d.test", "alice")
    assert off.get("a@d.test") is None


def test_recipient_limit_per_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lmtpd.server, "MAX_RECIPIENTS", 2)
    drop = make_drop()

    async def script(c: trio.abc.Stream) -> None:
        await read_replies(c, 1)
        rcpts = b"RCPT TO:<alice@d.test>\r\nRCPT TO:<postmaster@d.test>\r\nRCPT TO:<bob@d.test>\r\n"
        await c.send_all(b"LHLO c\r\nMAIL FROM:<a@x>\r\n" + rcpts + b"DATA\r\n")
        replies_ = await read_replies(c, 6)
        assert replies_[4] == b"452 4.5.3 Too many recipients\r\n"
        await c.send_all(b"x\r\n.\r\n")
        assert len(await read_replies(c, 2)) == 2  # one per accepted recipient

    run_session(drop, script)
    assert len(drop.inboxes["alice"].messages) == 2
    assert drop.inboxes["bob"].messages == []


def test_a_failing_connection_does_not_stop_the_server() -> None:
    class ExplodingDrop(MemoryMailDrop):
        def session(self) -> MemorySession:
            session = super().session()

            async def resolve(address: str) -> Resolution:
                raise RuntimeError("bug in resolve")

            session.resolve = resolve  # type: ignore[method-assign]
            return session

    drop = ExplodingDrop()

    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            f = s.makefile("rb")
            greeting = f.readline()
            s.sendall(b"LHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<u@d.test>\r\n")
            rest = f.read()  # returns once the server closes this connection
            assert b"2.1.5" not in rest  # the recipient was never accepted
            return greeting

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(serve, OPTS, drop, "127.0.0.1", 0)
            port = listeners[0].socket.getsockname()[1]
            for _ in range(2):  # the second connection is still served
                greeting = await trio.to_thread.run_sync(client, port)
                assert greeting.startswith(b"220 mx.test ")
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_delivery_slower_than_the_idle_timeout_is_answered() -> None:
    """The idle timeout runs only while the server waits for the client, not for the store."""

    class SlowDrop(MemoryMailDrop):
        def session(self) -> MemorySession:
            session = super().session()
            deliver = session.deliver

            async def slow(
                recipients: Sequence[Recipient], prefixes: Sequence[bytes], body: MessageSource
            ) -> list[DeliveryResult]:
                await trio.sleep(0.5)
                return await deliver(recipients, prefixes, body)

            session.deliver = slow  # type: ignore[method-assign]
            return session

    drop = SlowDrop(max_message_size=20_000)
    drop.add_user("alice", "alice@d.test")

    async def script(c: trio.abc.Stream) -> None:
        await read_replies(c, 1)
        await c.send_all(b"LHLO c\r\nMAIL FROM:<s@x.test>\r\nRCPT TO:<alice@d.test>\r\nDATA\r\n")
        await read_replies(c, 4)
        await c.send_all(b"Subject: slow\r\n\r\nbody\r\n.\r\n")
        (stored,) = await read_replies(c, 1)
        assert stored.startswith(b"250 2.0.0 ")
        (bye,) = await read_replies(c, 1)  # and then, idle, the connection times out
        assert bye.startswith(b"421 4.4.2 ")

    run_session(drop, script, LmtpdOptions(max_message_size=10_000, hostname="mx.test", idle_timeout=0.2))
    assert len(drop.inboxes["alice"].messages) == 1


def test_replies_the_client_does_not_read_at_once_arrive_whole_and_in_order() -> None:
    """Pipelined commands whose replies overflow the socket: what it does not take at once is sent
    when the client reads (send_all), after what it took, in order."""
    count = 20_000

    async def main() -> None:
        with trio.fail_after(60):
            await exchange()

    async def exchange() -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(serve, OPTS, make_drop(), "127.0.0.1", 0)
            port = listeners[0].socket.getsockname()[1]
            raw = socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the replies cannot all fit
            sock = trio.socket.from_stdlib_socket(raw)
            await sock.connect(("127.0.0.1", port))
            client = trio.SocketStream(sock)
            received = bytearray()

            async def read_all() -> None:
                await trio.sleep(0.3)  # let the server's replies pile up first
                while data := await client.receive_some(65536):
                    received.extend(data)

            async with trio.open_nursery() as inner:
                inner.start_soon(read_all)
                await client.send_all(b"LHLO c\r\n" + b"NOOP\r\n" * count + b"QUIT\r\n")
            await client.aclose()
            nursery.cancel_scope.cancel()
        lines = bytes(received).split(b"\r\n")
        assert lines[0].startswith(b"220 ") and lines[-1] == b""
        assert lines[-2].startswith(b"221 ")
        assert lines[-2 - count : -2] == [b"250 2.0.0 Ok"] * count

    trio.run(main)
