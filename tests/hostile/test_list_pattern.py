"""Issue 9.1: a LIST pattern made the regex matcher backtrack for minutes and
froze imapd for every user. Matching is now one pass over the name, and long
LISTs yield the event loop so other sessions keep being answered."""

from __future__ import annotations

import random
import re
import time

import trio

from imapd.session.list_match import DELIMITER, matches
from imapd.store_fake import FakeStore
from tests.imap_server_wire import connected, running_server, trio_test

EVIL_PATTERN = "*a*a*a*a*a*a*a*b"


def _regex_reference(pattern: str, name: str) -> bool:
    """The old semantics (a backtracking regex), for small inputs only."""
    out = []
    for ch in pattern:
        out.append(".*" if ch == "*" else f"[^{re.escape(DELIMITER)}]*" if ch == "%" else re.escape(ch))
    regex = "".join(out)
    if pattern[:5].upper() == "INBOX":
        regex = "(?i:INBOX)" + "".join(out[5:])
    return re.fullmatch(regex, name, re.DOTALL) is not None


def test_matcher_agrees_with_the_regex_semantics_on_random_inputs() -> None:
    rng = random.Random(9)
    alphabet = "ab/*%"
    names = ["INBOX", "inbox", "INBOX/x", "Inbox/a/b", "", "a", "/", "a/b", "ab/ba", "b/a/"]
    names += ["".join(rng.choice("ab/") for _ in range(rng.randrange(0, 7))) for _ in range(60)]
    patterns = ["*", "%", "INBOX", "inbox*", "INBOX/%", "%/%", "*/", "a%", "**%%*"]
    patterns += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 6))) for _ in range(200)]
    for pattern in patterns:
        for name in names:
            assert matches(pattern, name) == _regex_reference(pattern, name), (pattern, name)


def test_evil_pattern_is_linear_in_the_name() -> None:
    names = ["a" * 190 + f"{i:02d}" for i in range(30)]
    started = time.perf_counter()
    assert not any(matches(EVIL_PATTERN, name) for name in names)
    assert matches(EVIL_PATTERN, "a" * 190 + "b")
    # The regex matcher did not finish this in minutes.
    assert time.perf_counter() - started < 0.5
    long_pattern = "*a" * 2000 + "*b"
    started = time.perf_counter()
    assert not matches(long_pattern, "a" * 5000)
    assert time.perf_counter() - started < 2.0


async def _bob_noops(port: int, stop: trio.Event, noops: list[tuple[float, float]]) -> None:
    """Another user's NOOPs, from a client task on the server's own event loop: it runs only
    when the server's tasks yield, so its latency is how long the server held the loop.
    (A client in an OS thread measures the GIL's hand-over instead: a thread waiting in
    recv() next to a CPU-bound thread gets the interpreter back late however often the loop
    yields.)"""
    async with connected(port) as bob:
        await bob.login("bob", "hunter2")
        while not stop.is_set():
            started = time.perf_counter()
            assert (await bob.command("NOOP"))[-1].endswith(b"OK NOOP completed\r\n")
            noops.append((started, time.perf_counter()))
            await trio.sleep(0.005)


async def _list_while_bob_noops(store: FakeStore, pattern: str) -> tuple[float, float, list[bytes]]:
    """(LIST time, worst latency of bob's NOOPs overlapping it (0 if none did), LIST response lines)."""
    async with running_server(store) as (_server, ports, _store):
        noops: list[tuple[float, float]] = []
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_bob_noops, ports[0], stop, noops)
            while not noops:
                await trio.sleep(0.01)
            try:
                async with connected(ports[0]) as alice:
                    await alice.login()
                    started = time.perf_counter()
                    lines = await alice.command(f'LIST "" "{pattern}"')
                    ended = time.perf_counter()
                await trio.sleep(0.1)  # a NOOP held up by the LIST completes now
            finally:
                stop.set()
        overlapping = [end - start for start, end in noops if end >= started and start <= ended]
        return ended - started, max(overlapping, default=0.0), lines


@trio_test
async def test_the_issue_list_finishes_and_another_user_is_answered_meanwhile() -> None:
    store = FakeStore()
    store.create_user("alice", "secret")
    store.create_user("bob", "hunter2")
    for i in range(30):
        await store.create_mailbox("alice", "a" * 190 + f"{i:02d}")
    took, worst_noop, lines = await _list_while_bob_noops(store, EVIL_PATTERN)
    assert lines[-1].endswith(b"OK LIST completed\r\n") and len(lines) == 1
    assert took < 2.0, took
    assert worst_noop < 0.2, worst_noop


@trio_test
async def test_a_long_list_yields_to_other_sessions() -> None:
    store = FakeStore()
    store.create_user("alice", "secret")
    store.create_user("bob", "hunter2")
    # Names against a 1600-position pattern, nothing matches (no output to flush, so no
    # write yields for it). Mailboxes are added until the LIST costs more than 0.2 s on this
    # machine (a quiet one did 2000 names in 0.11 s): far more than one slice of CPU.
    count = 0
    for target in (2000, 5000, 12000, 30000):
        while count < target:
            await store.create_mailbox("alice", f"box{count:05d}/" + "a" * 200)
            count += 1
        took, worst_noop, lines = await _list_while_bob_noops(store, "*a" * 800 + "*b")
        if took > 0.2:
            break
    assert lines[-1].endswith(b"OK LIST completed\r\n") and len(lines) == 1
    assert took > 0.2, "the LIST must be long enough to show that it yields"
    assert worst_noop > 0, "no NOOP of bob overlapped the LIST"
    # Without the slices the NOOP waits for the whole LIST; with them, a few slices at most.
    assert worst_noop < max(0.1, took / 4), (worst_noop, took)
