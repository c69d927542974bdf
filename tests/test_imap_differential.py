"""Differential conformance: the scripted conversations of tests/differential run
against a throwaway Dovecot and a throwaway mailha; normalised answers must match
except for the allowlisted differences (tests/differential/allowlist.py)."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator

import pytest

from bench import dovecot
from bench.imap_spawn import SpawnedStack
from store.client import StoreClient
from tests.differential.allowlist import ALLOWED, EXTRA_CODES, EXTRA_LINES
from tests.differential.conversations import CONVERSATIONS
from tests.differential.engine import Difference, Runner, compare, normalise

pytestmark = pytest.mark.skipif(dovecot.available() is not None, reason=str(dovecot.available()))

PASSWORD = "diff-secret"
USERS = {f"conv{i}": PASSWORD for i in range(len(CONVERSATIONS))}


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Runner, Runner]]:
    reference = dovecot.DovecotStack().start(USERS)
    try:
        mailha = SpawnedStack().start()
        try:
            with StoreClient(mailha.store_address) as client:
                for name, password in USERS.items():
                    client.create_user(name, password)
            yield Runner(reference.imap_port), Runner(mailha.port)
        finally:
            mailha.stop()
    finally:
        reference.stop()


def test_conversations_match_dovecot_except_the_allowlist(servers: tuple[Runner, Runner]) -> None:
    reference, mailha = servers
    differences: list[Difference] = []
    compared = 0
    for i, conversation in enumerate(CONVERSATIONS):
        user = f"conv{i}"
        expected = reference.play(conversation, user, PASSWORD)
        got = mailha.play(conversation, user, PASSWORD)
        compared += sum(1 for _, command in conversation.steps if not command.startswith(b"#"))
        differences += compare(conversation, expected, got, [p for p, _ in EXTRA_LINES], EXTRA_CODES)
    unexpected = [d for d in differences if (d.conversation, d.step) not in ALLOWED]
    stale = set(ALLOWED) - {(d.conversation, d.step) for d in differences}
    print(f"{len(CONVERSATIONS)} conversations, {compared} commands compared, {len(differences)} allowlisted")
    assert not unexpected, f"{len(unexpected)} differences from Dovecot:\n" + "\n".join(map(str, unexpected))
    assert not stale, f"allowlist entries that no longer differ: {sorted(stale)}"


def _capabilities(port: int) -> set[str]:
    """CAPABILITY after login (what issue 12 compares; SASL mechanisms are a pre-login matter)."""
    client = imaplib.IMAP4("127.0.0.1", port)
    try:
        client.login("conv0", PASSWORD)
        typ, data = client.capability()
        assert typ == "OK"
        return set(data[0].decode().split())
    finally:
        client.logout()


def test_capabilities_cover_dovecots(servers: tuple[Runner, Runner]) -> None:
    """Issue 12's done-when: after login, a superset of what Dovecot advertises (NOTIFY included)."""
    reference, mailha = servers
    missing = _capabilities(reference.port) - _capabilities(mailha.port)
    assert not missing, f"Dovecot advertises what mailha lacks: {sorted(missing)}"
    ours = _capabilities(mailha.port)
    for name in ("SAVEDATE", "PREVIEW", "SNIPPET=FUZZY", "PREVIEW=FUZZY", "LOGIN-REFERRALS", "OBJECTID", "NOTIFY"):
        assert name in ours, name
    for name in ("SEARCHRES", "CONTEXT=SEARCH", "CONTEXT=SORT", "BINARY", "CATENATE", "URL-PARTIAL"):
        assert name in ours, name  # Dovecot's, and tested against it in the conversations
    for name in ("IMAP4rev2", "UTF8=ACCEPT", "COMPRESS=DEFLATE", "METADATA"):
        assert name in ours, name  # beyond Dovecot 2.3: RFC-example tests


def test_an_idle_keepalive_is_not_a_difference() -> None:
    """Dovecot's first `* OK Still here` comes at a moment of its choosing (it failed the
    `idle` conversation once when it fell inside the 5 s of IDLE); other OK lines still count."""
    with_keepalive = normalise([b"* 1 EXISTS\r\n", b"* OK Still here\r\n", b"a2 OK Idle completed.\r\n"])
    assert with_keepalive == normalise([b"* 1 EXISTS\r\n", b"a2 OK done\r\n"])
    assert normalise([b"* OK [ALERT] Still here\r\n", b"a2 OK\r\n"]) != normalise([b"a2 OK\r\n"])
