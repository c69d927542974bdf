"""METADATA (RFC 5464) with imaplib (raw commands: imaplib has no METADATA calls) against a
real store + imapd (implicit TLS): annotations written, read back, bounded, kept in the store."""

from __future__ import annotations

import imaplib
from typing import Any

import pytest

from tests.imap_clients_stack import ImapStack, imap_stack

pytestmark = pytest.mark.integration
__all__ = ["imap_stack"]

HOST = "127.0.0.1"
PASSWORD = "metadata-pw-1"
imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))


def _run(m: imaplib.IMAP4, name: str, *args: str) -> tuple[str, list[Any]]:
    typ, data = m._simple_command(name, *args)
    return typ, data if name == "SETMETADATA" else m._untagged_response(typ, data, "METADATA")[1]


def test_imaplib_metadata_end_to_end(imap_stack: ImapStack) -> None:
    imap_stack.create_user("annotator", PASSWORD)
    m = imaplib.IMAP4_SSL(HOST, imap_stack.tls_port, ssl_context=imap_stack.ssl_context())
    try:
        m.login("annotator", PASSWORD)
        assert "METADATA" in m.capabilities
        assert _run(m, "SETMETADATA", '""', '(/shared/comment "Server note")')[0] == "OK"
        assert _run(m, "SETMETADATA", "INBOX", '(/private/comment "Inbox note" /private/vendor/a/b "deep")')[0] == "OK"
        assert _run(m, "GETMETADATA", '""', "/shared/comment") == ("OK", [b'"" (/shared/comment "Server note")'])
        typ, data = _run(m, "GETMETADATA", "(DEPTH infinity)", "INBOX", "/private")
        assert (typ, data) == ("OK", [b'"INBOX" (/private/comment "Inbox note" /private/vendor/a/b "deep")'])
        typ, data = m._simple_command("SETMETADATA", "INBOX", "(/private/big {70000+}\r\n" + "x" * 70000 + ")")
        assert typ == "NO" and data[0].startswith(b"[METADATA MAXSIZE 65536]"), data
        m.untagged_responses.pop("METADATA", None)  # imaplib keeps the response code as if untagged
        assert _run(m, "SETMETADATA", "INBOX", "(/private/comment NIL)")[0] == "OK"
        assert _run(m, "GETMETADATA", "INBOX", "/private/comment") == ("OK", [b'"INBOX" (/private/comment NIL)'])
    finally:
        m.logout()
    # Stored in the store: another connection (another imapd session) sees them.
    again = imaplib.IMAP4_SSL(HOST, imap_stack.tls_port, ssl_context=imap_stack.ssl_context())
    try:
        again.login("annotator", PASSWORD)
        assert _run(again, "GETMETADATA", '""', "/shared/comment") == ("OK", [b'"" (/shared/comment "Server note")'])
    finally:
        again.logout()
