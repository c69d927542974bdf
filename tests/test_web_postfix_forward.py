"""A user's forwarding through Debian's Postfix, end to end (root, integration).

The private Postfix of tests/test_postfix_delivery.py relays lmtp.test to
lmtpd; lmtpd's --forward-relay is that same Postfix. Mail for erin (who
forwards to bob, keeping a copy) goes Postfix -> lmtpd -> (forward) Postfix
-> lmtpd -> bob, and lands in both INBOXes with the original envelope sender.
"""

from __future__ import annotations

import os
import pathlib
import signal
import smtplib
import subprocess
import sys
import time

import pytest

from mailha_api import settings_pb2
from store.admin import Admin
from store.client import StoreClient
from tests.imap_clients_stack import free_port
from tests.test_postfix_delivery import DOMAIN, private_postfix
from tests.web_stack import _wait_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="Postfix needs root"),
]
ROOT = pathlib.Path(__file__).resolve().parent.parent


def _inbox(store: str, user: str) -> list[bytes]:
    with StoreClient(store) as client:
        selected = client.select(user, "INBOX")
        return [client.fetch_body(user, selected.mailbox.mailbox_id, uid) for uid in selected.uids]


def test_forwarding_goes_out_through_postfix_and_comes_back(tmp_path: pathlib.Path) -> None:
    lmtp, imap, imaps = free_port(), free_port(), free_port()
    data = tmp_path / "node"
    store = f"unix:{data / 'run' / 'store.sock'}"
    with private_postfix(lmtp) as postfix:
        argv = [
            sys.executable, "-m", "mailha.cli", "standalone", "--data", str(data), "--web-listen", "",
            "--lmtp-listen", f"127.0.0.1:{lmtp}", "--imap-listen", f"127.0.0.1:{imap}",
            "--imaps-listen", f"127.0.0.1:{imaps}", "--forward-relay", f"127.0.0.1:{postfix.smtp_port}",
            "--service-user", "root",  # pytest's tmp_path is root-only; the drop is tested elsewhere
        ]  # fmt: skip
        log = tmp_path / "standalone.out"
        with open(log, "wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        try:
            _wait_port(lmtp, process, log)
            admin = Admin.connect(store)
            try:
                for user in ("erin", "bob"):
                    admin.add_user(user, f"{user}-password", 0)
                    admin.add_address(f"{user}@{DOMAIN}", user)
                admin.put_settings(
                    settings_pb2.UserSettings(user="erin", forward_to=f"bob@{DOMAIN}", forward_keep_copy=True)
                )
            finally:
                admin.close()
            with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=30) as smtp:
                smtp.sendmail(
                    "sender@outside.test",
                    [f"erin@{DOMAIN}"],
                    f"From: sender@outside.test\r\nTo: erin@{DOMAIN}\r\nSubject: pass it on\r\n"
                    f"Message-ID: <fwd-postfix-1@outside.test>\r\n\r\nfor erin, then bob\r\n",
                )
            deadline = time.monotonic() + 60
            while not _inbox(store, "bob"):
                assert time.monotonic() < deadline, f"not forwarded; postfix log:\n{postfix.log()}"
                time.sleep(0.3)
            bob = _inbox(store, "bob")
            erin = _inbox(store, "erin")
            maillog = postfix.log()
            # Now bob forwards back to erin, without a copy: a loop, which stops at erin's second arrival.
            admin = Admin.connect(store)
            try:
                admin.put_settings(settings_pb2.UserSettings(user="bob", forward_to=f"erin@{DOMAIN}"))
            finally:
                admin.close()
            with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=30) as smtp:
                smtp.sendmail(
                    "sender@outside.test",
                    [f"erin@{DOMAIN}"],
                    "Subject: round and round\r\nMessage-ID: <loop-1@outside.test>\r\n\r\nloop\r\n",
                )
            deadline = time.monotonic() + 60
            while len(_inbox(store, "erin")) < 3:
                assert time.monotonic() < deadline, f"loop copy missing; postfix log:\n{postfix.log()}"
                time.sleep(0.3)
            time.sleep(2)  # anything still going round would arrive now
            erin_after = _inbox(store, "erin")
            bob_after = _inbox(store, "bob")
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    assert len(bob) == 1 and len(erin) == 1  # forwarded, and the copy kept
    assert bob[0].startswith(b"Return-Path: <sender@outside.test>\r\nDelivered-To: bob@lmtp.test\r\n")
    assert b"<fwd-postfix-1@outside.test>" in bob[0] and b"<fwd-postfix-1@outside.test>" in erin[0]
    # Postfix handled it twice: from outside to erin, then lmtpd's forward to bob.
    assert "to=<erin@lmtp.test>" in maillog and "to=<bob@lmtp.test>" in maillog, maillog
    assert b"Delivered-To: erin@lmtp.test" in bob[0].split(b"\r\n\r\n", 1)[0]  # the loop marker
    loop_copies = [m for m in erin_after if b"<loop-1@outside.test>" in m]
    assert len(loop_copies) == 2 and len(erin_after) == 3  # kept on arrival, kept again when it came back
    assert len(bob_after) == 1  # bob keeps no copy
