"""Debian's Postfix delivering into mailha over LMTP, end to end (root, integration).

A private Postfix instance (own config, queue and data directories in a
temp dir, SMTP on a high loopback port, nothing shared with the system
instance) relays the domain lmtp.test to mailha's lmtpd. Mail is submitted
with `sendmail -C DIR` and over SMTP, then read back over IMAP (STARTTLS,
imaplib) from the standalone node's imapd.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pathlib
import re
import shutil
import smtplib
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lmtpd.local_servers import free_port, wait_for_port
from mailha_api import store_pb2
from store.client import StoreClient
from tests.lmtp_standalone import Node, standalone_node

pytestmark = [
    pytest.mark.integration,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="Postfix needs root"),
    pytest.mark.skipif(shutil.which("postfix") is None, reason="postfix not installed (scripts/bootstrap.sh)"),
]

DOMAIN = "lmtp.test"


def _postfix(conf: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    # postfix(1) reports errors to syslog unless stdin is a terminal; `script`
    # gives it one so that failures show up in the test output.
    command = " ".join(["postfix", "-c", str(conf), *args])
    return subprocess.run(
        ["script", "-qec", command, "/dev/null"], capture_output=True, text=True, timeout=60, check=False
    )


def _master_cf(smtp_port: int) -> str:
    """The system master.cf with SMTP moved to a loopback port and no chroot (the queue is elsewhere)."""
    out = []
    for line in pathlib.Path("/etc/postfix/master.cf").read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            fields = line.split()
            if fields[:2] == ["smtp", "inet"]:
                fields[0] = f"127.0.0.1:{smtp_port}"
            if len(fields) >= 8:
                fields[4] = "n"
            line = " ".join(fields)
        out.append(line)
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class PrivatePostfix:
    root: pathlib.Path
    smtp_port: int

    @property
    def conf(self) -> pathlib.Path:
        return self.root / "etc"

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def private_postfix(lmtp_port: int) -> Iterator[PrivatePostfix]:
    root = pathlib.Path(tempfile.mkdtemp(prefix="mailha-postfix-", dir="/tmp"))
    os.chmod(root, 0o755)  # postfix daemons run as user postfix and must reach the queue
    smtp_port = free_port()
    conf = root / "etc"
    for d in ("etc", "queue", "data"):
        (root / d).mkdir()
    shutil.chown(root / "data", "postfix")
    (conf / "master.cf").write_text(_master_cf(smtp_port))
    (conf / "main.cf").write_text(
        f"""compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
syslog_name = postfix-mailha-test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mta.mailha.test
mydomain = mailha.test
myorigin = mailha.test
mydestination =
relayhost =
relay_domains = {DOMAIN}
transport_maps = inline:{{ {DOMAIN}=lmtp:inet:127.0.0.1:{lmtp_port} }}
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
local_recipient_maps =
smtp_dns_support_level = disabled
lmtp_host_lookup = native
smtputf8_enable = no
biff = no
"""
    )
    started = _postfix(conf, "start")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        wait_for_port(smtp_port, None, timeout=30)
        yield PrivatePostfix(root, smtp_port)
    finally:
        _postfix(conf, "stop")
        # master exits asynchronously; wait before removing its queue.
        deadline = time.monotonic() + 10
        while (root / "data" / "master.lock").exists() and time.monotonic() < deadline:
            if _postfix(conf, "status").returncode != 0:
                break
            time.sleep(0.2)
        shutil.rmtree(root, ignore_errors=True)


def _read_over_imap(endpoint: tuple[str, int], user: str, password: str) -> list[bytes]:
    with imaplib.IMAP4(*endpoint, timeout=30) as imap:
        if "STARTTLS" in imap.capabilities:
            imap.starttls(ssl._create_unverified_context())  # the standalone's self-signed dev certificate
        imap.login(user, password)
        imap.select("INBOX", readonly=True)
        typ, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[])")
        assert typ == "OK"
        return [part[1] for part in data if isinstance(part, tuple)]


def _read_over_store(store: str, user: str) -> list[bytes]:
    with StoreClient(store) as client:
        box = client.mailbox_id(user, "INBOX")
        return [client.fetch_body(user, box, uid) for uid in client.select(user, "INBOX").uids]


def _inbox(node: Node, user: str, password: str) -> list[bytes]:
    assert node.imap is not None, "the standalone node did not announce IMAP"
    return _read_over_imap(node.imap, user, password)


def _wait_for(node: Node, count: int, postfix: PrivatePostfix) -> list[bytes]:
    deadline = time.monotonic() + 60
    while True:
        # Poll cheaply through the store; the assertions read over IMAP.
        bodies = _read_over_store(node.store, "demo")
        if len(bodies) >= count:
            return _inbox(node, "demo", "demo")
        assert time.monotonic() < deadline, f"only {len(bodies)} of {count} delivered; postfix log:\n{postfix.log()}"
        time.sleep(0.3)


def test_postfix_delivers_over_lmtp(tmp_path: pathlib.Path) -> None:
    with standalone_node(tmp_path) as node:
        with StoreClient(node.store) as client:
            epoch = client.epoch()
            client.stub.AddAddress(store_pb2.AddAddressRequest(epoch=epoch, address=f"demo@{DOMAIN}", user="demo"))
            client.stub.AddAddress(store_pb2.AddAddressRequest(epoch=epoch, address=f"sales@{DOMAIN}", user="demo"))
        with private_postfix(node.lmtp_port) as postfix:
            # 1. the sendmail command of the private instance
            message = (
                f"From: someone@sender.test\nTo: demo@{DOMAIN}\nSubject: via sendmail\n\n"
                ".a line starting with a dot\nbody via sendmail\n"
            )
            sent = subprocess.run(
                ["sendmail", "-C", str(postfix.conf), "-f", "someone@sender.test", f"demo+tag@{DOMAIN}"],
                input=message,
                text=True,
                capture_output=True,
                timeout=30,
                check=False,
            )
            assert sent.returncode == 0, sent.stderr
            # 2. SMTP to the instance's smtpd; one recipient unknown to mailha
            with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=30) as smtp:
                refused = smtp.sendmail(
                    "other@sender.test",
                    [f"sales@{DOMAIN}", f"nobody@{DOMAIN}"],
                    f"From: other@sender.test\r\nTo: sales@{DOMAIN}\r\nSubject: via smtp\r\n\r\nbody via smtp\r\n",
                )
                assert refused == {}  # Postfix accepts for relay; mailha refuses nobody@ at RCPT
            bodies = _wait_for(node, 2, postfix)
            deadline = time.monotonic() + 30
            while "nobody@lmtp.test" not in postfix.log() or "status=bounced" not in postfix.log():
                assert time.monotonic() < deadline, postfix.log()
                time.sleep(0.3)
            log = postfix.log()
    by_subject = {re.search(rb"Subject: (via \w+)", b)[1]: b for b in bodies}  # type: ignore[index]
    via_sendmail = by_subject[b"via sendmail"]
    via_smtp = by_subject[b"via smtp"]
    assert via_sendmail.startswith(b"Return-Path: <someone@sender.test>\r\nDelivered-To: demo+tag@lmtp.test\r\n")
    assert b"\r\n.a line starting with a dot\r\nbody via sendmail\r\n" in via_sendmail
    assert via_smtp.startswith(b"Return-Path: <other@sender.test>\r\nDelivered-To: sales@lmtp.test\r\n")
    assert b"Received: from " in via_smtp  # Postfix's own trace header survives
    assert re.search(r"to=<nobody@lmtp\.test>.*status=bounced .*550 5\.1\.1", log), log
    assert re.search(r"to=<demo\+tag@lmtp\.test>.*relay=127\.0\.0\.1.*status=sent \(250 2\.0\.0", log), log
