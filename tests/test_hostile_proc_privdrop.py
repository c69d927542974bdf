"""Issue 9 item 10: started as root, standalone runs store, imapd and lmtpd as the
unprivileged service user, and they still serve IMAP and LMTP."""

from __future__ import annotations

import imaplib
import os
import pathlib
import pwd
import smtplib
import stat
import subprocess
import sys

import pytest

from nodeconf.service_user import ServiceUserError, resolve
from tests.lmtp_standalone import reachable_tmp_dir, standalone_node
from tests.store_fixtures import ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the drop happens only when started as root)")


def service_users(data_dir: pathlib.Path) -> dict[str, str]:
    """{service: user} of the processes serving `data_dir`'s node."""
    ps = subprocess.run(["ps", "-ww", "-eo", "user:32=,args="], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in ps.splitlines():
        user, _, args = line.strip().partition(" ")
        for service in ("store", "imapd", "lmtpd"):
            if f"mailha.cli {service} serve" in args and str(data_dir) in args and not args.startswith("setpriv"):
                found[service] = user
    return found


def owner(path: pathlib.Path) -> str:
    return pwd.getpwuid(os.lstat(path).st_uid).pw_name


def test_standalone_services_run_as_the_service_user_and_still_work() -> None:
    with reachable_tmp_dir() as tmp, standalone_node(tmp, "--allow-plaintext-login", service_user="mailha") as node:
        data = node.paths.data_dir
        assert service_users(data) == {"store": "mailha", "imapd": "mailha", "lmtpd": "mailha"}
        lmdb = data / "store" / "lmdb" / "data.mdb"
        sock = data / "run" / "store.sock"
        assert owner(lmdb) == "mailha" and owner(sock) == "mailha"
        assert stat.S_IMODE(os.lstat(sock).st_mode) == 0o600
        assert owner(data / "log" / "store.log") == "root"  # the launcher's, not the service's

        with smtplib.LMTP("127.0.0.1", node.lmtp_port) as lmtp:
            lmtp.sendmail("sender@example.org", ["demo@mailha.test"], b"Subject: hi\r\n\r\nover LMTP\r\n")
        assert node.imap is not None
        imap = imaplib.IMAP4(*node.imap)
        try:
            imap.login("demo", "demo")
            typ, _ = imap.append("INBOX", "", imaplib.Time2Internaldate(0), b"Subject: two\r\n\r\nover IMAP\r\n")
            assert typ == "OK"
            typ, data_ = imap.select("INBOX")
            assert typ == "OK" and data_ == [b"2"]
        finally:
            imap.logout()


def test_unreachable_data_dir_and_unknown_user_are_refused_clearly(tmp_path: pathlib.Path) -> None:
    # tmp_path sits under pytest's 0700 root directory: the service user cannot get there.
    done = subprocess.run(
        [sys.executable, "-m", "mailha.cli", "standalone", "--data", str(tmp_path / "node")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 2
    assert "service user 'mailha' cannot reach it" in done.stderr and "--service-user root" in done.stderr
    with pytest.raises(ServiceUserError, match="does not exist"):
        resolve("no-such-mailha-user")
    assert resolve("root") is None
