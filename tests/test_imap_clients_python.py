"""Python's imaplib and imapclient against a real store + imapd process pair,
over STARTTLS and implicit TLS with the development certificate."""

from __future__ import annotations

import imaplib
import re
import time
from typing import Any

import pytest
from imapclient import IMAPClient

from tests.imap_clients_stack import USERS, ImapStack, imap_stack

pytestmark = pytest.mark.integration
__all__ = ["imap_stack"]

HOST = "127.0.0.1"


def ok(result: tuple[str, Any]) -> list[Any]:
    """imaplib's (type, data): assert OK, return the data."""
    assert result[0] == "OK", result
    return list(result[1])


def _message(subject: str, body: str = "Hello from the test.") -> bytes:
    return (
        f"From: Tester <tester@example.org>\r\nTo: someone@example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@example.org>\r\n\r\n{body}\r\n"
    ).encode()


def test_plaintext_login_refused_without_tls(imap_stack: ImapStack) -> None:
    m = imaplib.IMAP4(HOST, imap_stack.port)
    try:
        assert "LOGINDISABLED" in m.capabilities and "STARTTLS" in m.capabilities
        with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
            m.login("alice", USERS["alice"])
    finally:
        m.shutdown()


def test_imaplib_starttls_full_mailbox_workflow(imap_stack: ImapStack) -> None:
    m = imaplib.IMAP4(HOST, imap_stack.port)
    m.starttls(ssl_context=imap_stack.ssl_context())
    assert "AUTH=PLAIN" in m.capabilities and "LOGINDISABLED" not in m.capabilities
    _ = ok(m.login("alice", USERS["alice"]))
    listing = ok(m.list())
    names = b"\n".join(x for x in listing if isinstance(x, bytes))
    for special in (b"\\Sent", b"\\Drafts", b"\\Trash", b"\\Junk", b"\\Archive"):
        assert special in names
    data = ok(m.select("INBOX"))
    assert data == [b"0"]
    for i in range(3):
        data = ok(m.append("INBOX", "(\\Flagged)" if i == 0 else None, None, _message(f"imaplib {i}")))
        assert b"APPENDUID" in data[0]
    m.noop()
    data = ok(m.search(None, "SUBJECT", '"imaplib 1"'))
    assert data == [b"2"]
    data = ok(m.uid("SEARCH", "FLAGGED"))
    assert data == [b"1"]
    data = ok(m.fetch("2", "(FLAGS RFC822.SIZE BODY.PEEK[])"))
    raw = data[0]
    assert isinstance(raw, tuple) and raw[1] == _message("imaplib 1")
    data = ok(m.store("2", "+FLAGS", "(\\Answered)"))
    assert b"\\Answered" in data[0]
    data = ok(m.copy("1:2", "Archive"))
    assert b"COPYUID" in data[0]
    data = ok(m.uid("MOVE", "3", "Trash"))
    assert m.response("EXPUNGE") == ("EXPUNGE", [b"3"])  # MOVE's own EXPUNGE, taken off the pile
    data = ok(m.status("Archive", "(MESSAGES UIDNEXT)"))
    assert b"MESSAGES 2" in data[0]
    data = ok(m.status("Trash", "(MESSAGES)"))
    assert b"MESSAGES 1" in data[0]
    m.store("1", "+FLAGS", "(\\Deleted)")
    data = ok(m.expunge())
    assert data == [b"1"]
    data = ok(m.search(None, "ALL"))
    assert data == [b"1"]
    m.create("Projects/Alpha")
    data = ok(m.list('""', "Projects*"))
    assert any(b"Projects/Alpha" in x for x in data if isinstance(x, bytes))
    assert m.rename("Projects/Alpha", "Projects/Beta")[0] == "OK"
    assert m.delete("Projects/Beta")[0] == "OK"
    data = ok(m.getquotaroot("INBOX"))
    m.logout()


def test_imapclient_tls_idle_flags_move_condstore(imap_stack: ImapStack) -> None:
    ctx = imap_stack.ssl_context()
    with (
        IMAPClient(HOST, port=imap_stack.tls_port, ssl=True, ssl_context=ctx) as a,
        IMAPClient(HOST, port=imap_stack.tls_port, ssl=True, ssl_context=ctx) as b,
    ):
        a.login("bob", USERS["bob"])
        b.login("bob", USERS["bob"])
        assert b"IDLE" in a.capabilities() and b"CONDSTORE" in a.capabilities()
        folders = {f[2]: f[0] for f in a.list_folders()}
        assert b"\\Sent" in folders["Sent"]
        info = a.select_folder("INBOX")
        assert info[b"EXISTS"] == 0 and b"HIGHESTMODSEQ" in info
        b.select_folder("INBOX")

        # IDLE: b appends, a hears EXISTS quickly.
        a.idle()
        latencies = []
        for i in range(5):
            start = time.perf_counter()
            b.append("INBOX", _message(f"idle {i}"))
            responses = a.idle_check(timeout=5)
            latencies.append(time.perf_counter() - start)
            assert (i + 1, b"EXISTS") in responses
        a.idle_done()
        print(f"IDLE EXISTS latency (real store): max {max(latencies) * 1000:.1f} ms")
        assert max(latencies) < 1.0

        # Flags set in one session arrive in the other as FETCH FLAGS.
        uids = a.search(["ALL"])
        assert uids == [1, 2, 3, 4, 5]
        b.add_flags([2], [b"\\Flagged"])
        time.sleep(0.1)
        a.noop()
        assert a.get_flags([2])[2] == (b"\\Flagged",)  # recent to b, which appended it while selected
        assert a.search(["FLAGGED"]) == [2]
        fetched = a.fetch([1], ["ENVELOPE", "BODY[]", "INTERNALDATE"])
        assert fetched[1][b"ENVELOPE"].subject == b"idle 0"
        assert fetched[1][b"BODY[]"] == _message("idle 0")

        # CONDSTORE: changes since a modseq.
        base = a.folder_status("INBOX", ["HIGHESTMODSEQ"])[b"HIGHESTMODSEQ"]
        b.add_flags([4], [b"\\Seen"])
        changed = a.fetch([1, 2, 3, 4, 5], ["FLAGS"], modifiers=[f"CHANGEDSINCE {base}"])
        assert set(changed) == {4}

        # MOVE, and the other session learns of the expunge.
        a.move([5], "Archive")
        assert a.search(["ALL"]) == [1, 2, 3, 4]
        time.sleep(0.1)
        b.noop()
        assert b.search(["ALL"]) == [1, 2, 3, 4]
        assert b.folder_status("Archive", ["MESSAGES"])[b"MESSAGES"] == 1
        a.logout()
        b.logout()


def test_qresync_resynchronisation(imap_stack: ImapStack) -> None:
    m = imaplib.IMAP4_SSL(HOST, imap_stack.tls_port, ssl_context=imap_stack.ssl_context())
    m.login("carol", USERS["carol"])
    m._simple_command("ENABLE", "QRESYNC")
    m.select("Drafts")
    for i in range(4):
        m.append("Drafts", None, None, _message(f"draft {i}"))
    data = ok(m.status("Drafts", "(UIDVALIDITY HIGHESTMODSEQ)"))
    uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1))  # type: ignore[union-attr]
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", data[0]).group(1))  # type: ignore[union-attr]
    m.close()
    # Another session changes the mailbox while we are away.
    other = imaplib.IMAP4_SSL(HOST, imap_stack.tls_port, ssl_context=imap_stack.ssl_context())
    other.login("carol", USERS["carol"])
    other.select("Drafts")
    other.store("1", "+FLAGS", "(\\Seen)")
    other.store("2", "+FLAGS", "(\\Deleted)")
    other.expunge()
    other.logout()
    data = ok(m._simple_command("SELECT", "Drafts", f"(QRESYNC ({uidvalidity} {modseq}))"))
    vanished = m.untagged_responses.get("VANISHED", [])
    assert any(b"(EARLIER) 2" in v for v in vanished if isinstance(v, bytes))
    fetches = b" ".join(x for x in m.untagged_responses.get("FETCH", []) if isinstance(x, bytes))
    assert b"UID 1" in fetches and b"\\Seen" in fetches
    m.logout()


def test_big_message_streams_in_and_out(imap_stack: ImapStack) -> None:
    # Over 4 MiB: the streamed Append path to the store, and a multi-chunk Fetch back.
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-+=!?\r\n"
    big = b"Subject: big one\r\nFrom: a@example.org\r\n\r\n" + line * (6 * 1024 * 1024 // len(line))
    m = imaplib.IMAP4_SSL(HOST, imap_stack.tls_port, ssl_context=imap_stack.ssl_context())
    m.login("carol", USERS["carol"])
    data = ok(m.append("Archive", None, None, big))
    uid = int(data[0].split()[2].rstrip(b"]"))
    ok(m.select("Archive"))
    fetched = ok(m.uid("FETCH", str(uid), "(RFC822.SIZE BODY.PEEK[])"))
    assert fetched[0][1] == big
    assert b"RFC822.SIZE %d" % len(big) in fetched[0][0]
    m.logout()


def test_uidvalidity_changes_when_a_mailbox_is_recreated(imap_stack: ImapStack) -> None:
    m = imaplib.IMAP4_SSL(HOST, imap_stack.tls_port, ssl_context=imap_stack.ssl_context())
    m.login("carol", USERS["carol"])

    def uidvalidity(name: str) -> int:
        status = ok(m.status(name, "(UIDVALIDITY)"))[0]
        return int(re.search(rb"UIDVALIDITY (\d+)", status).group(1))  # type: ignore[union-attr]

    ok(m.create("Recycled"))
    first = uidvalidity("Recycled")
    ok(m.delete("Recycled"))
    ok(m.create("Recycled"))
    assert uidvalidity("Recycled") != first
    ok(m.create("Other"))
    ok(m.delete("Recycled"))
    ok(m.rename("Other", "Recycled"))
    assert uidvalidity("Recycled") != first
    m.logout()
