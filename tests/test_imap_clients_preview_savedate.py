"""PREVIEW (RFC 8970, with Dovecot's SNIPPET/PREVIEW=FUZZY forms) and SAVEDATE
(RFC 8514) with imaplib and IMAPClient against a real store + imapd (implicit
TLS): the preview the store computed at append, the save date it kept, a COPY's
new save date, and SEARCH SAVED*/SAVEDATESUPPORTED."""

from __future__ import annotations

import datetime
import email.utils
import imaplib
import re
import time
from typing import Any

import pytest
from imapclient import IMAPClient

from tests.imap_clients_stack import ImapStack, imap_stack

pytestmark = pytest.mark.integration
__all__ = ["imap_stack"]

HOST = "127.0.0.1"
PASSWORD = "preview-pw-1"
PLAIN = b"From: a@example.org\r\nSubject: plain\r\n\r\nHello Bob,\r\n> you wrote\r\nsee you   soon\r\n"
HTML = (
    b"From: a@example.org\r\nSubject: html\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<html><head><style>b{}</style></head><body><p>Gr\xc3\xbc&szlig;e &amp; <b>more</b></p></body></html>\r\n"
)
IMAGE = b"From: a@example.org\r\nSubject: image\r\nContent-Type: image/png\r\n\r\nAAAA\r\n"


def ok(result: tuple[str, Any]) -> list[Any]:
    assert result[0] == "OK", result
    return list(result[1])


def _today() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%d-%b-%Y")


def test_imaplib_preview_and_savedate(imap_stack: ImapStack) -> None:
    imap_stack.create_user("previewer", PASSWORD)
    m = imaplib.IMAP4_SSL(HOST, imap_stack.tls_port, ssl_context=imap_stack.ssl_context())
    try:
        ok(m.login("previewer", PASSWORD))
        for cap in ("PREVIEW", "SNIPPET=FUZZY", "PREVIEW=FUZZY", "SAVEDATE"):
            assert cap in m.capabilities, cap
        old = imaplib.Time2Internaldate(time.time() - 40 * 86400)
        for data in (PLAIN, HTML, IMAGE):
            ok(m.append("INBOX", None, old, data))  # internal date 40 days ago, saved now
        ok(m.select("INBOX"))
        answer = ok(m.fetch("1:3", "(PREVIEW)"))
        assert answer[0] == b'1 (PREVIEW "Hello Bob, see you soon")'
        assert answer[1] == (b"2 (PREVIEW {14}", "Grüße & more".encode())
        assert answer[3] == b'3 (PREVIEW "")'
        assert ok(m.fetch("1", "(PREVIEW (LAZY))")) == [b'1 (PREVIEW "Hello Bob, see you soon")']
        assert ok(m.fetch("1", "(SNIPPET (FUZZY))")) == [b'1 (SNIPPET (FUZZY "Hello Bob, see you soon"))']
        assert ok(m.fetch("1", "(PREVIEW (FUZZY))")) == [b'1 (PREVIEW (FUZZY "Hello Bob, see you soon"))']
        saved = ok(m.fetch("1", "(SAVEDATE INTERNALDATE)"))[0]
        found = re.search(rb'SAVEDATE "([^"]+)"', saved)
        assert found is not None
        when = email.utils.parsedate_to_datetime(found.group(1).decode().replace("-", " ", 2))
        assert abs(when.timestamp() - time.time()) < 300  # saved now, not the internal date
        assert ok(m.search(None, "SAVEDATESUPPORTED")) == [b"1 2 3"]
        assert ok(m.search(None, "SAVEDSINCE", _today())) == [b"1 2 3"]
        assert ok(m.search(None, "SAVEDON", _today())) == [b"1 2 3"]
        assert ok(m.search(None, "SAVEDBEFORE", _today())) == [b""]
        assert ok(m.search(None, "BEFORE", _today())) == [b"1 2 3"]  # the internal dates are old
        # A preview of a message's own text does not mark it \Seen.
        assert b"\\Seen" not in ok(m.fetch("1", "(FLAGS)"))[0]
    finally:
        m.logout()


def test_a_copy_has_its_own_save_date(imap_stack: ImapStack) -> None:
    imap_stack.create_user("saver", PASSWORD)
    with IMAPClient(HOST, port=imap_stack.tls_port, ssl_context=imap_stack.ssl_context()) as client:
        client.login("saver", PASSWORD)
        client.append("INBOX", PLAIN)
        client.create_folder("Kept")
        client.select_folder("INBOX")
        first = client.fetch([1], ["SAVEDATE"])
        time.sleep(1.1)
        client.copy([1], "Kept")
        client.select_folder("Kept")
        uid = client.search()[0]
        copied = client.fetch([uid], ["SAVEDATE", "PREVIEW"])
        assert copied[uid][b"SAVEDATE"] > first[1][b"SAVEDATE"]
        assert copied[uid][b"PREVIEW"] == b"Hello Bob, see you soon"  # the copy shares the stored preview


def test_objectid_with_the_real_store(imap_stack: ImapStack) -> None:
    """RFC 8474 against the store: ids from its mailbox and body ids, kept where the RFC says."""
    imap_stack.create_user("objects", PASSWORD)
    m = imaplib.IMAP4_SSL(HOST, imap_stack.tls_port, ssl_context=imap_stack.ssl_context())
    try:
        ok(m.login("objects", PASSWORD))
        assert "OBJECTID" in m.capabilities
        typ, data = m.create("foo")
        assert typ == "OK" and data[0].startswith(b"[MAILBOXID (F"), data
        foo = data[0].split(b"(")[1].split(b")")[0]
        assert ok(m.status("foo", "(MAILBOXID)")) == [b'"foo" (MAILBOXID (' + foo + b"))"]
        ok(m.rename("foo", "bar"))
        assert ok(m.status("bar", "(MAILBOXID)")) == [b'"bar" (MAILBOXID (' + foo + b"))"]
        ok(m.append("INBOX", None, None, PLAIN))
        ok(m.select("INBOX"))
        untagged_ok = [r for r in m.untagged_responses.get("OK", []) if isinstance(r, bytes)]
        assert [r for r in untagged_ok if r.startswith(b"[MAILBOXID (F")], untagged_ok
        first = ok(m.fetch("1", "(EMAILID THREADID)"))[0]
        assert re.fullmatch(rb"1 \(EMAILID \(M[0-9a-f]+\) THREADID NIL\)", first), first
        email_id = first.split(b"(")[2].split(b")")[0]
        ok(m.copy("1", "bar"))
        ok(m.select("bar"))
        assert ok(m.fetch("1", "(EMAILID)")) == [b"1 (EMAILID (" + email_id + b"))"]
        assert ok(m.search(None, "EMAILID", email_id.decode())) == [b"1"]
        ok(m._simple_command("MOVE", "1", "INBOX"))
        ok(m.select("INBOX"))
        assert ok(m.fetch("1:*", "(EMAILID)")) == [b"%d (EMAILID (%s))" % (n, email_id) for n in (1, 2)]
    finally:
        m.logout()
