"""Own writes reach the other sessions from the write's reply, other writers' from
the store's Watch (issue 13): with both racing, every session must still see
each change once and in order. Real store, imapd and lmtpd processes.

A wrong merge shows up here as: a peer's map missing a UID (announced after a
higher one, so dropped), a flag change told twice or never, or the "another
session's change is reported at the next command" rule broken.
"""

from __future__ import annotations

import pathlib
import re
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from bench.imap_spawn import SpawnedStack
from store.client import StoreClient
from tests.differential.wire import WireClient
from tests.lmtp_standalone import standalone_node

pytestmark = pytest.mark.integration

ROUNDS = 60
_FETCH = re.compile(rb"^\* \d+ FETCH \(")
_UID = re.compile(rb"\bUID (\d+)")
_MODSEQ = re.compile(rb"\bMODSEQ \((\d+)\)")
_EXISTS = re.compile(rb"^\* (\d+) EXISTS")
_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")


def _login(port: int, user: bytes, password: bytes) -> tuple[WireClient, int]:
    """A session with INBOX selected (CONDSTORE on: flag changes come with UID and MODSEQ), and its EXISTS."""
    client = WireClient(port, timeout=30)
    assert client.command(b"l", b"LOGIN " + user + b" " + password)[-1].startswith(b"l OK")
    assert client.command(b"e", b"ENABLE CONDSTORE")[-1].startswith(b"e OK")
    answer = client.command(b"s", b"SELECT INBOX")
    assert answer[-1].startswith(b"s OK"), answer
    return client, int(next(m[1] for line in answer if (m := _EXISTS.match(line))))


def _ok(client: WireClient, tag: bytes, command: bytes) -> list[bytes]:
    answer = client.command(tag, command)
    assert answer[-1].startswith(tag + b" OK"), answer
    return answer


def _changes(lines: list[bytes]) -> list[tuple[int, int]]:
    """(UID, MODSEQ) of each FETCH that reports flags."""
    out = []
    for line in lines:
        if (
            _FETCH.match(line)
            and b"FLAGS (" in line
            and (uid := _UID.search(line))
            and (modseq := _MODSEQ.search(line))
        ):
            out.append((int(uid[1]), int(modseq[1])))
    return out


def _map(answer: list[bytes]) -> list[int]:
    """UIDs of a `FETCH 1:* (UID)`: the session's own map, sequence numbers resolved in its view."""
    return [
        int(m[1]) for line in answer if (m := re.match(rb"^\* \d+ FETCH \(UID (\d+)(?: MODSEQ \(\d+\))?\)\r\n", line))
    ]


class Peer:
    """A session that only watches: NOOPs, counting what each one announces."""

    def __init__(self, session: tuple[WireClient, int]) -> None:
        self.client, self.exists = session
        self.told: Counter[tuple[int, int]] = Counter()
        self.count = 0

    def noop(self) -> list[bytes]:
        return self.command(b"NOOP")

    def uids(self) -> list[int]:
        return _map(self.command(b"FETCH 1:* (UID)"))

    def command(self, command: bytes) -> list[bytes]:
        """Any command; what it announces is counted."""
        self.count += 1
        answer = _ok(self.client, b"n%d" % self.count, command)
        for line in answer:
            if line.endswith(b" EXPUNGE\r\n"):
                self.exists -= 1
            elif m := _EXISTS.match(line):
                assert int(m[1]) >= self.exists, f"EXISTS went back from {self.exists}: {answer}"
                self.exists = int(m[1])
        self.told.update(_changes(answer))
        return answer


def _message(i: int, who: str) -> bytes:
    return b"From: %s@example.org\r\nSubject: %s %d\r\n\r\nbody %d\r\n" % (who.encode(), who.encode(), i, i)


def _write_and_check(writer: WireClient, peers: list[Peer], i: int, *, next_command: bool) -> list[tuple[int, int]]:
    """One APPEND and one flag change by `writer`; with `next_command`, every peer's next
    command must report both. Returns the flag changes made (UID, MODSEQ)."""
    message = _message(i, "own")
    answer = _ok(writer, b"a%d" % i, b"APPEND INBOX {%d}\r\n" % len(message) + message)
    uid = int(_APPENDUID.search(answer[-1])[1])  # type: ignore[index]
    for peer in peers:
        before = peer.exists
        peer.noop()
        if next_command:
            assert peer.exists > before, f"round {i}: the peer was not told of UID {uid}"
    answer = _ok(writer, b"f%d" % i, b"UID STORE %d +FLAGS (\\Flagged)" % uid)
    made = _changes(answer)
    assert [u for u, _ in made] == [uid], answer
    for peer in peers:
        lines = peer.noop()
        if next_command:
            assert made[0] in _changes(lines), f"round {i}: the peer missed {made[0]}: {lines}"
    return made


@pytest.fixture()
def node(tmp_path: pathlib.Path) -> Iterator[tuple[int, int]]:
    with standalone_node(tmp_path, "--allow-plaintext-login") as started:
        assert started.imap is not None
        yield started.imap[1], started.lmtp_port


def test_two_sessions_of_one_imapd_with_lmtp_delivering_meanwhile(node: tuple[int, int]) -> None:
    imap_port, lmtp_port = node
    writer, _ = _login(imap_port, b"demo", b"demo")
    peer = Peer(_login(imap_port, b"demo", b"demo"))
    delivered: list[int] = []
    failures: list[BaseException] = []

    def deliver() -> None:
        try:
            with smtplib.LMTP("127.0.0.1", lmtp_port, timeout=30) as lmtp:
                for i in range(ROUNDS):
                    assert lmtp.sendmail("s@x.test", ["demo@mailha.test"], _message(i, "lmtp")) == {}
                    delivered.append(i)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    thread = threading.Thread(target=deliver)
    thread.start()
    try:
        made: list[tuple[int, int]] = []
        for i in range(ROUNDS):
            made += _write_and_check(writer, [peer], i, next_command=True)
            if i % 10 == 9:
                # An expunge of our own among the deliveries: the peer's next command says so.
                uid = made[-1][0]
                _ok(writer, b"d%d" % i, b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
                answer = _ok(writer, b"x%d" % i, b"UID EXPUNGE %d" % uid)
                assert any(line.endswith(b" EXPUNGE\r\n") for line in answer), answer
                lines = peer.noop()
                assert any(line.endswith(b" EXPUNGE\r\n") for line in lines), lines
        thread.join(60)
        assert not failures, failures
        assert len(delivered) == ROUNDS
        fresh, exists = _login(imap_port, b"demo", b"demo")
        for _ in range(50):  # bounded: lmtpd's last deliveries come over Watch, a round trip behind
            peer.noop()
            if peer.exists >= exists:
                break
            time.sleep(0.05)
        assert peer.exists == exists
        assert peer.uids() == _map(_ok(fresh, b"t", b"FETCH 1:* (UID)"))
        assert {change: peer.told[change] for change in made} == dict.fromkeys(made, 1)
        assert max(peer.told.values()) == 1, "a change was told twice"
        fresh.close()
    finally:
        thread.join(60)
        writer.close()
        peer.client.close()


@pytest.fixture()
def workers() -> Iterator[SpawnedStack]:
    spawned = SpawnedStack(workers=2).start()
    try:
        with StoreClient(spawned.store_address) as client:
            client.create_user("pair", "pair-secret")
        yield spawned
    finally:
        spawned.stop()


def test_sessions_spread_over_two_imapd_workers_with_an_outside_writer(workers: SpawnedStack) -> None:
    """Peers in the writer's process hear its writes from the replies, peers in the other
    worker from Watch; all of them once, in order, with the store's own client appending
    meanwhile (another process, as lmtpd)."""
    writer, _ = _login(workers.port, b"pair", b"pair-secret")
    peers = [Peer(_login(workers.port, b"pair", b"pair-secret")) for _ in range(4)]
    failures: list[BaseException] = []

    def deliver() -> None:
        try:
            with StoreClient(workers.store_address) as client:
                for i in range(ROUNDS):
                    client.append_bytes("pair", "INBOX", _message(i, "outside"))
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=deliver)
    thread.start()
    try:
        made: list[tuple[int, int]] = []
        for i in range(ROUNDS // 2):
            # Across processes the change comes over Watch, asynchronously: no next-command rule.
            made += _write_and_check(writer, peers, i, next_command=False)
        thread.join(60)
        assert not failures, failures
        fresh, _ = _login(workers.port, b"pair", b"pair-secret")
        truth = _map(_ok(fresh, b"t", b"FETCH 1:* (UID)"))
        for peer in peers:
            for _ in range(50):  # bounded: the other worker's feed is a Watch round trip behind
                if peer.noop() and peer.uids() == truth:
                    break
                time.sleep(0.05)
            assert peer.uids() == truth
            assert {change: peer.told[change] for change in made} == dict.fromkeys(made, 1)
            assert max(peer.told.values()) == 1, "a change was told twice"
        fresh.close()
    finally:
        thread.join(60)
        writer.close()
        for peer in peers:
            peer.client.close()
