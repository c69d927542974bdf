"""NOTIFY (RFC 5465) with imaplib (raw commands: imaplib has no NOTIFY call) against a real
store + imapd (implicit TLS): the account feed (WatchAccount) carries another connection's
changes to the NOTIFY session as STATUS and LIST responses, between commands and in IDLE."""

from __future__ import annotations

import imaplib
import time

import pytest

from tests.imap_clients_stack import ImapStack, imap_stack

pytestmark = pytest.mark.integration
__all__ = ["imap_stack"]

HOST = "127.0.0.1"
PASSWORD = "notify-pw-1"
imaplib.Commands.setdefault("NOTIFY", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("IDLE", ("AUTH", "SELECTED"))  # Python 3.11's imaplib has no IDLE


def _connect(imap_stack: ImapStack) -> imaplib.IMAP4_SSL:
    m = imaplib.IMAP4_SSL(HOST, imap_stack.tls_port, ssl_context=imap_stack.ssl_context())
    m.login("notified", PASSWORD)
    return m


def _noop_until(m: imaplib.IMAP4, kind: str, deadline: float = 5.0) -> list[bytes]:
    """NOOP until `kind` untagged responses arrived (the feed is asynchronous across processes)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        m.noop()
        found = m.untagged_responses.pop(kind, None)
        if found:
            return [item for item in found if isinstance(item, bytes)]
        time.sleep(0.05)
    raise AssertionError(f"no {kind} within {deadline} s")


def test_imaplib_notify_end_to_end(imap_stack: ImapStack) -> None:
    imap_stack.create_user("notified", PASSWORD)
    a, b = _connect(imap_stack), _connect(imap_stack)
    try:
        assert "NOTIFY" in a.capabilities
        assert b.create("Work")[0] == "OK"
        typ, _ = a._simple_command("NOTIFY", "SET", "STATUS", "(personal (MessageNew MessageExpunge MailboxName))")
        assert typ == "OK"
        first = [item for item in a.untagged_responses.pop("STATUS", []) if isinstance(item, bytes)]
        assert any(item.startswith(b'"Work" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY ') for item in first), first
        assert b.append("Work", "", imaplib.Time2Internaldate(time.time()), b"Subject: x\r\n\r\nbody")[0] == "OK"
        status = _noop_until(a, "STATUS")
        assert status == [status[0]] and status[0].startswith(b'"Work" (MESSAGES 1 UIDNEXT 2 UNSEEN 1 '), status
        assert b.create("Later")[0] == "OK"
        assert _noop_until(a, "LIST") == [b'() "/" "Later"']
        # In IDLE the notification comes without a command.
        tag = a._command("IDLE")
        a.sock.settimeout(5)
        assert a._get_line().startswith(b"+ ")
        assert b.delete("Later")[0] == "OK"
        try:
            line = a._get_line()
        except TimeoutError:
            raise AssertionError("no notification during IDLE") from None
        assert line == b'* LIST (\\NonExistent) "/" "Later"', line
        a.send(b"DONE\r\n")
        assert a._command_complete("IDLE", tag)[0] == "OK"
        assert a._simple_command("NOTIFY", "NONE")[0] == "OK"
    finally:
        a.logout()
        b.logout()
