"""The throwaway reference Dovecot that benchmarks and differential tests start."""

from __future__ import annotations

import imaplib
import smtplib

import pytest

from bench import dovecot

pytestmark = pytest.mark.skipif(dovecot.available() is not None, reason=str(dovecot.available()))


def test_throwaway_dovecot_serves_imap_and_lmtp_and_leaves_nothing() -> None:
    stack = dovecot.DovecotStack().start({"ann": "secret-1", "bob": "secret-2"})
    directory = stack.directory
    try:
        with smtplib.LMTP("127.0.0.1", stack.lmtp_port) as lmtp:
            refused = lmtp.sendmail("a@b.example", ["bob@mailha.test"], b"Subject: hi\r\n\r\nbody\r\n")
        assert refused == {}
        client = imaplib.IMAP4("127.0.0.1", stack.imap_port)
        with pytest.raises(imaplib.IMAP4.error):
            client.login("ann", "wrong")
        client = imaplib.IMAP4("127.0.0.1", stack.imap_port)
        assert client.login("bob", "secret-2")[0] == "OK"
        assert client.select("INBOX") == ("OK", [b"1"])
        typ, data = client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        first = data[0]
        assert typ == "OK" and isinstance(first, tuple) and b"Subject: hi" in first[1]
        client.logout()
        assert stack.cpu() > 0.0
    finally:
        stack.stop()
    assert not directory.exists()
    assert stack.master is None
