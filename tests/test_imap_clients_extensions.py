"""Python's imaplib and IMAPClient against a real store + imapd process pair
(implicit TLS): SEARCHRES (RFC 5182) and CONTEXT=SEARCH/SORT (RFC 5267) as a
client uses them, through the clients' generic command paths."""

from __future__ import annotations

import base64
import imaplib
from typing import Any

import pytest
from imapclient import IMAPClient

from tests.imap_clients_stack import ImapStack, imap_stack

pytestmark = pytest.mark.integration
__all__ = ["imap_stack"]

HOST = "127.0.0.1"
PASSWORD = "ext-pw-1"


def ok(result: tuple[str, Any]) -> list[Any]:
    assert result[0] == "OK", result
    return list(result[1])


def _message(n: int, subject: str) -> bytes:
    return f"From: x{n}@example.org\r\nTo: r@example.org\r\nSubject: {subject}\r\n\r\nbody {n}\r\n".encode()


def _client(imap_stack: ImapStack, user: str) -> imaplib.IMAP4_SSL:
    m = imaplib.IMAP4_SSL(HOST, imap_stack.tls_port, ssl_context=imap_stack.ssl_context())
    ok(m.login(user, PASSWORD))
    return m


def test_imaplib_searchres_and_update_contexts(imap_stack: ImapStack) -> None:
    imap_stack.create_user("extuser", PASSWORD)
    m = _client(imap_stack, "extuser")
    other = _client(imap_stack, "extuser")
    try:
        for cap in ("SEARCHRES", "CONTEXT=SEARCH", "CONTEXT=SORT", "ESEARCH", "ESORT"):
            assert cap in m.capabilities, cap
        for n, subject in enumerate(("report", "lunch", "report draft", "misc"), 1):
            ok(m.append("INBOX", "(\\Flagged)" if n % 2 else None, None, _message(n, subject)))
        ok(m.select("INBOX"))
        # SEARCHRES: save, then use "$" in FETCH, STORE and COPY (pipelining-safe: no numbers sent back).
        ok(m.uid("SEARCH", "RETURN", "(SAVE)", "SUBJECT", "report"))
        fetched = ok(m.fetch("$", "(UID)"))
        assert [x.split(b" ", 1)[0] for x in fetched] == [b"1", b"3"]
        ok(m.store("$", "+FLAGS", "(\\Answered)"))
        assert ok(m.search(None, "ANSWERED")) == [b"1 3"]
        ok(m.create("Reports"))
        ok(m.uid("COPY", "$", "Reports"))
        assert ok(m.status("Reports", "(MESSAGES)")) == [b'"Reports" (MESSAGES 2)']
        # An update context: the other session's change arrives as ESEARCH ADDTO at the next NOOP.
        typ, data = m._simple_command("UID", "SEARCH", "RETURN", "(UPDATE COUNT)", "FLAGGED")
        assert typ == "OK", data
        assert m.untagged_responses.pop("ESEARCH", None) is not None
        ok(other.select("INBOX"))
        ok(other.store("2", "+FLAGS", "(\\Flagged)"))
        ok(m.noop())
        updates = m.untagged_responses.pop("ESEARCH", [])
        assert any(b"UID ADDTO (0 2)" in u for u in updates), updates
    finally:
        other.logout()
        m.logout()


def test_imapclient_sort_context_and_partial(imap_stack: ImapStack) -> None:
    imap_stack.create_user("extsort", PASSWORD)
    with IMAPClient(HOST, port=imap_stack.tls_port, ssl_context=imap_stack.ssl_context()) as client:
        client.login("extsort", PASSWORD)
        for n, subject in enumerate(("delta", "alpha", "charlie"), 1):
            client.append("INBOX", _message(n, subject))
        client.select_folder("INBOX")
        assert client.has_capability("CONTEXT=SORT")
        answer = client._raw_command_untagged(
            b"SORT",  # IMAPClient prefixes UID itself (use_uid)
            [b"RETURN", b"(UPDATE PARTIAL 1:2)", b"(SUBJECT)", b"UTF-8", b"ALL"],
            response_name="ESEARCH",
        )
        assert answer[0].endswith(b" UID PARTIAL (1:2 2:3)"), answer
        client.append("INBOX", _message(4, "bravo"))  # this session's APPEND: ADDTO, sort position 2
        pushed = client._imap.untagged_responses.pop("ESEARCH", [])
        assert any(b"UID ADDTO (2 4)" in u for u in pushed), pushed


def test_imaplib_binary_fetch(imap_stack: ImapStack) -> None:
    imap_stack.create_user("extbin", PASSWORD)
    payload = bytes(range(256)) * 4
    attached = (
        b'Subject: attached\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + b"\r\n".join(base64.encodebytes(payload).splitlines())
        + b"\r\n--b--\r\n"
    )
    m = _client(imap_stack, "extbin")
    try:
        assert "BINARY" in m.capabilities
        ok(m.append("INBOX", None, None, attached))
        ok(m.select("INBOX", readonly=True))
        data = ok(m.fetch("1", "(BINARY.SIZE[2] BINARY.PEEK[2])"))
        # imaplib reads literal8 (~{n}) like a literal: (prefix, bytes) then ")".
        assert data[0][0].endswith(b"BINARY.SIZE[2] %d BINARY[2] ~{%d}" % (len(payload), len(payload)))
        assert data[0][1] == payload
    finally:
        m.logout()


def test_imaplib_catenate_with_urls(imap_stack: ImapStack) -> None:
    imap_stack.create_user("extcat", PASSWORD)
    m = _client(imap_stack, "extcat")
    try:
        for cap in ("CATENATE", "URL-PARTIAL"):
            assert cap in m.capabilities, cap
        ok(m.append("INBOX", None, None, _message(1, "forward me")))
        # A message built on the server from the original and a URL-PARTIAL cut of its body
        # (imaplib can only send a literal at the end of a command: URLs only here).
        urls = '(URL "/INBOX/;UID=1" URL "/INBOX/;UID=1/;SECTION=TEXT/;PARTIAL=0.4")'
        typ, data = m._simple_command("APPEND", "Drafts", "CATENATE", urls)
        assert typ == "OK" and b"APPENDUID" in data[-1], (typ, data)
        ok(m.select("Drafts", readonly=True))
        fetched = ok(m.fetch("1", "(BODY.PEEK[])"))
        assert fetched[0][1] == _message(1, "forward me") + b"body"
    finally:
        m.logout()


def test_imaplib_utf8_accept_mailbox_names(imap_stack: ImapStack) -> None:
    imap_stack.create_user("extutf8", PASSWORD)
    m = _client(imap_stack, "extutf8")
    try:
        assert b" UTF8=ACCEPT" in ok(m.capability())[0]  # advertised after login only
        ok(m.enable("UTF8=ACCEPT"))
        assert m.untagged_responses.pop("ENABLED", None) == [b"UTF8=ACCEPT"]
        ok(m.create("Ärger"))  # imaplib now sends the name as UTF-8
        names = [line for line in ok(m.list()) if "Ärger".encode() in line]
        assert names == [b'(\\HasNoChildren) "/" "\xc3\x84rger"'], ok(m.list())
        ok(m.select("Ärger"))
        assert ok(m.status("Ärger", "(MESSAGES)")) == ['"Ärger" (MESSAGES 0)'.encode()]
    finally:
        m.logout()
