"""Issue 9.7: a success from an address reset that address's login delay (one
valid account unlocked fast guessing of all others), parallel connections each
waited on their own (60 connections = ~4 guesses/s), and failed logins were not
logged. Penalties are now keyed by address and by user, shared process-wide,
and each failure is one fail2ban-matchable log line."""

from __future__ import annotations

import configparser
import logging
import pathlib
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from imapd.session.abuse_limits import LoginThrottle, PenaltyKeys
from imapd.session.context import ServerSettings
from tests.imap_server_wire import RawClient, connected, running_server, trio_test
from tests.store_fixtures import ROOT

# How imapd's service formats its log (imapd/service.py).
SERVICE_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
# fail2ban's <HOST> for an IPv4/IPv6 address.
_HOST = r"(?:::f{4,6}:)?(?P<host>[0-9A-Fa-f.:]+)"
# What fail2ban's date detector cuts off before it applies the failregex.
_DATE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:,\d+)?")


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_parallel_attempts_take_turns_and_success_clears_only_the_user() -> None:
    clock = _Clock()
    throttle = LoginThrottle(base=1.0, cap=8.0, clock=clock)
    bob = PenaltyKeys.of("192.0.2.7", "bob")
    for _ in range(3):
        assert throttle.reserve(bob) is not None
        throttle.failed(bob)  # delay now 4 s for the address and for bob
    waits = [throttle.reserve(PenaltyKeys.of("192.0.2.7", f"user{i}")) for i in range(4)]
    # The address's penalty is shared: each parallel attempt takes the next turn.
    assert waits[0] == 4.0 and waits[1] == 8.0 and waits[2] is None and waits[3] is None
    throttle.succeeded(PenaltyKeys.of("192.0.2.7", "alice"))
    assert throttle.failures(bob) == (3, 3), "alice's success must not clear the address or bob"
    throttle.succeeded(PenaltyKeys.of("192.0.2.99", "BOB"))
    assert throttle.failures(bob) == (3, 0)
    # The user key is shared across addresses too.
    carol_a, carol_b = PenaltyKeys.of("192.0.2.1", "carol"), PenaltyKeys.of("192.0.2.2", "carol")
    throttle.failed(carol_a)
    assert throttle.reserve(carol_b) == 1.0


async def _open_from(source: str, port: int) -> tuple[trio.SocketStream, RawClient]:
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    client = RawClient(stream)
    assert (await client.read_line()).startswith(b"* OK")
    return stream, client


@trio_test
async def test_another_accounts_success_does_not_reset_the_delay() -> None:
    settings = ServerSettings(allow_plaintext_login=True, tls_available=False, login_delay_base=0.1)
    async with running_server(settings=settings) as (_, ports, _store), connected(ports[0]) as c:
        for _ in range(3):  # 0.1 + 0.2 + 0.4 s
            assert b"NO [AUTHENTICATIONFAILED]" in (await c.command('LOGIN bob "guess"'))[-1]
        async with connected(ports[0]) as other:
            await other.login()  # alice, from the same address
        started = time.perf_counter()
        assert b"NO [AUTHENTICATIONFAILED]" in (await c.command('LOGIN bob "guess"'))[-1]
        assert time.perf_counter() - started >= 0.8  # before: 0.1, the delay started over


@trio_test
async def test_parallel_connections_share_the_penalty() -> None:
    settings = ServerSettings(
        allow_plaintext_login=True, tls_available=False, login_delay_base=0.1, login_delay_cap=0.4
    )
    async with running_server(settings=settings) as (_, ports, _store):
        async with connected(ports[0]) as c:
            for _ in range(3):
                await c.command('LOGIN alice "guess"')  # the address's delay is at its cap now
        replies: list[bytes] = []

        async def guess(i: int) -> None:
            async with connected(ports[0]) as g:
                replies.append((await g.command(f'LOGIN user{i} "guess"'))[-1])

        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for i in range(12):
                nursery.start_soon(guess, i)
        elapsed = trio.current_time() - started
    checked = [r for r in replies if b"[AUTHENTICATIONFAILED]" in r]
    refused = [r for r in replies if b"NO [UNAVAILABLE] Too many failed logins" in r]
    assert len(checked) + len(refused) == 12
    # One turn per 0.4 s for the address, waits bounded by the cap: the password is checked at
    # most once per 0.4 s however many connections guess (before: all 12 within ~0.5 s).
    assert refused
    assert 1 <= len(checked) <= 1 + elapsed / 0.4, (len(checked), elapsed)


@trio_test
async def test_user_penalty_spans_addresses() -> None:
    settings = ServerSettings(allow_plaintext_login=True, tls_available=False, login_delay_base=0.2)
    async with running_server(settings=settings) as (_, ports, _store):
        for source in ("127.0.0.2", "127.0.0.3"):
            stream, c = await _open_from(source, ports[0])
            assert b"[AUTHENTICATIONFAILED]" in (await c.command('LOGIN bob "guess"'))[-1]
            await stream.aclose()
        stream, c = await _open_from("127.0.0.4", ports[0])
        started = time.perf_counter()
        await c.command('LOGIN bob "guess"')
        # Third failure for bob: 0.8 s, though this address never failed before.
        assert time.perf_counter() - started >= 0.75
        await stream.aclose()


@contextmanager
def _auth_log() -> Iterator[list[str]]:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(logging.Formatter(SERVICE_FORMAT))
    root = logging.getLogger("imapd")
    old = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


def _failregex() -> re.Pattern[str]:
    conf = configparser.RawConfigParser()
    conf.read(ROOT / "contrib" / "fail2ban" / "filter.d" / "mailha.conf")
    return re.compile(conf.get("Definition", "failregex").replace("<HOST>", _HOST))


@trio_test
async def test_each_failure_is_one_fail2ban_line_without_the_password() -> None:
    settings = ServerSettings(
        allow_plaintext_login=True, tls_available=False, login_delay_base=0.01, login_delay_cap=0.02
    )
    with _auth_log() as lines:
        async with running_server(settings=settings) as (_, ports, _store):
            stream, c = await _open_from("127.0.0.5", ports[0])
            await c.command('LOGIN bob "hunter3-wrong"')
            await c.command("AUTHENTICATE PLAIN AGJvYgB3cm9uZy1wbGFpbg==")  # bob / wrong-plain
            await c.command('LOGIN "ev>il, rip=192.0.2.66" "x"')
            await c.login()  # a success logs no failure
            await stream.aclose()
    failures = [line for line in lines if "authentication failed" in line]
    assert len(failures) == 3, lines
    assert all("hunter3-wrong" not in line and "wrong-plain" not in line for line in lines)
    assert "user=<bob>, method=LOGIN, rip=127.0.0.5" in failures[0]
    assert "user=<bob>, method=PLAIN, rip=127.0.0.5" in failures[1]
    regex = _failregex()
    for line in failures:
        m = regex.search(_DATE.sub("", line))
        assert m is not None, line
        assert m.group("host") == "127.0.0.5"  # the user name cannot inject another address


def test_the_filter_matches_throttled_refusals_and_ignores_other_lines() -> None:
    regex = _failregex()
    line = "imapd.auth INFO authentication failed: user=<bob>, method=LOGIN, rip=192.0.2.7 (throttled)"
    m = regex.search(" " + line)
    assert m is not None and m.group("host") == "192.0.2.7"
    assert regex.search(" imapd.server INFO connection from 192.0.2.7 ended by the client: x") is None
    jail = configparser.RawConfigParser()
    jail.read(pathlib.Path(ROOT) / "contrib" / "fail2ban" / "jail.d" / "mailha.conf")
    assert jail.get("mailha-imap", "filter") == "mailha"
    assert jail.get("mailha-imap", "logpath") == "/run/mailha/*/log/imapd.log"
