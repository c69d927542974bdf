"""imaplib's sort()/thread() and IMAPClient's sort()/thread() against a real
store + imapd process pair (implicit TLS): SORT, THREAD and WITHIN end to end,
the SortKeys coming from the keys the store computed at append and then from the cache."""

from __future__ import annotations

import imaplib
from typing import Any

import pytest
from imapclient import IMAPClient

from tests.imap_clients_stack import ImapStack, imap_stack

pytestmark = pytest.mark.integration
__all__ = ["imap_stack"]

HOST = "127.0.0.1"
PASSWORD = "sort-pw-1"


def ok(result: tuple[str, Any]) -> list[Any]:
    assert result[0] == "OK", result
    return list(result[1])


def _message(n: int, subject: str, sender: str, refs: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: r@example.org\r\nSubject: {subject}\r\nMessage-ID: <c{n}@example.org>\r\n"
        f"Date: Tue, 0{n} Dec 2026 10:00:00 +0000\r\n{refs}\r\nbody {n}\r\n"
    ).encode()


MESSAGES = (
    _message(3, "Plans", "Carl <zz@example.org>"),
    _message(1, "Re: Plans", "Anna <yy@example.org>", "References: <c3@example.org>\r\n"),
    _message(2, "Agenda", "Bert <xx@example.org>"),
)


def test_imaplib_and_imapclient_sort_and_thread(imap_stack: ImapStack) -> None:
    imap_stack.create_user("sorter", PASSWORD)
    m = imaplib.IMAP4_SSL(HOST, imap_stack.tls_port, ssl_context=imap_stack.ssl_context())
    try:
        ok(m.login("sorter", PASSWORD))
        for caps in ("SORT", "SORT=DISPLAY", "THREAD=REFERENCES", "THREAD=REFS", "ESORT", "WITHIN", "STATUS=SIZE"):
            assert caps in m.capabilities, caps
        for data in MESSAGES:
            ok(m.append("INBOX", None, None, data))
        ok(m.select("INBOX"))
        assert ok(m.sort("(DATE)", "UTF-8", "ALL")) == [b"2 3 1"]
        assert ok(m.sort("(REVERSE SUBJECT)", "UTF-8", "ALL")) == [b"1 2 3"]
        assert ok(m.sort("(DISPLAYFROM)", "UTF-8", "ALL")) == [b"2 3 1"]
        assert ok(m.sort("(FROM)", "UTF-8", "ALL")) == [b"3 2 1"]
        assert ok(m.thread("REFERENCES", "UTF-8", "ALL")) == [b"(3)(1 2)"]
        assert ok(m.uid("SORT", "(SUBJECT)", "UTF-8", "ALL")) == [b"3 1 2"]
        assert ok(m.search(None, "YOUNGER", "3600")) == [b"1 2 3"]  # all arrived just now
        assert ok(m.search(None, "OLDER", "3600")) == [b""]
        status = ok(m.status("INBOX", "(SIZE)"))
        assert status == [b'"INBOX" (SIZE %d)' % sum(len(x) for x in MESSAGES)]
    finally:
        m.logout()
    with IMAPClient(HOST, port=imap_stack.tls_port, ssl_context=imap_stack.ssl_context()) as client:
        client.login("sorter", PASSWORD)
        client.select_folder("INBOX", readonly=True)
        uids = client.search()
        assert client.sort(["REVERSE DATE"]) == [uids[0], uids[2], uids[1]]
        assert client.sort("ARRIVAL", ["SUBJECT", "Plans"]) == [uids[0], uids[1]]
        # ORDEREDSUBJECT: grouped by base subject, each group and the groups in sent-date order.
        assert client.thread("ORDEREDSUBJECT") == ((uids[1], uids[0]), (uids[2],))
