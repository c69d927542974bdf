"""An IMAP client in IDLE sees a message delivered over LMTP at once (standalone node, integration)."""

from __future__ import annotations

import pathlib
import smtplib
import ssl
import time

import pytest
from imapclient import IMAPClient

from tests.lmtp_standalone import standalone_node

pytestmark = pytest.mark.integration


def test_idle_session_sees_lmtp_delivery(tmp_path: pathlib.Path) -> None:
    with standalone_node(tmp_path) as node:
        assert node.imap is not None
        host, port = node.imap
        with IMAPClient(host, port=port, ssl=False, timeout=30) as imap:
            imap.starttls(ssl._create_unverified_context())  # the node's self-signed dev certificate
            imap.login("demo", "demo")
            before = imap.select_folder("INBOX")[b"EXISTS"]
            imap.idle()
            with smtplib.LMTP("127.0.0.1", node.lmtp_port, timeout=30) as lmtp:
                message = b"Subject: idle-subject-7f3a\r\n\r\nbody-text-7f3a\r\n"
                assert lmtp.sendmail("s@x.test", ["demo@mailha.test"], message) == {}
            delivered = time.monotonic()
            seen: list[object] = []
            while not seen and time.monotonic() - delivered < 5:
                seen = [r for r in imap.idle_check(timeout=1) if isinstance(r, tuple) and r[1] == b"EXISTS"]
            latency = time.monotonic() - delivered
            imap.idle_done()
            assert seen, "no EXISTS within 5 s of the LMTP 250"
            assert seen[0] == (before + 1, b"EXISTS")
            assert latency < 2.0
            imap.use_uid = False  # address the new message by its sequence number from EXISTS
            (fetched,) = imap.fetch([before + 1], ["BODY.PEEK[]"]).values()
            assert fetched[b"BODY[]"].startswith(b"Return-Path: <s@x.test>\r\nDelivered-To: demo@mailha.test\r\n")
        log = (node.paths.data_dir / "log" / "lmtpd.log").read_text()
        assert "delivered: user=demo uid=" in log
        assert "7f3a" not in log  # no message content in logs
