"""Issue 14: imapd and lmtpd export Prometheus metrics (sessions, commands by
name and result, latency histograms, deliveries) on --metrics-listen."""

from __future__ import annotations

import imaplib
import pathlib
import smtplib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lmtpd.local_servers import LocalServers, free_port, local_servers, stop, wait_for_port
from nodeconf import services
from store.client import StoreClient
from tests.test_lmtp_store import _addr

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServers]:
    with local_servers(tmp_path_factory.mktemp("metrics"), max_message_size=1024 * 1024) as srv:
        with StoreClient(srv.store) as client:
            client.create_user("dora", "dora-pw", epoch=srv.epoch)
            client.stub.AddAddress(_addr("dora@d.test", "dora", srv.epoch))
        yield srv


def _samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
                text = reply.read().decode()
            break
        except OSError:
            assert time.monotonic() < deadline, "metrics never served"
            time.sleep(0.05)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _start(argv: tuple[str, ...], log: pathlib.Path, port: int) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    wait_for_port(port, proc)
    return proc


def test_lmtpd_metrics(servers: LocalServers, tmp_path: pathlib.Path) -> None:
    port, mport = free_port(), free_port()
    spec = services.lmtpd_service(
        servers.store,
        servers.epoch,
        f"127.0.0.1:{port}",
        max_message_size=1024 * 1024,
        hostname="m.test",
        metrics_listen=f"127.0.0.1:{mport}",
    )
    proc = _start(spec.argv, tmp_path / "lmtpd.log", port)
    try:
        with smtplib.LMTP("127.0.0.1", port) as lmtp:
            lmtp.sendmail("s@x.test", ["dora@d.test"], b"Subject: m\r\n\r\nmetrics\r\n")
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                lmtp.sendmail("s@x.test", ["ghost@d.test"], b"Subject: m\r\n\r\nx\r\n")
            m = _samples(mport)
            assert m[("mailha_lmtpd_sessions", ())] == 1.0
        assert m[("mailha_lmtpd_deliveries_total", (("outcome", "delivered"),))] == 1.0
        assert m[("mailha_lmtpd_commands_total", (("command", "RCPTTO"), ("result", "550")))] == 1.0
        assert m[("mailha_lmtpd_commands_total", (("command", "RCPTTO"), ("result", "250")))] == 1.0
        assert m[("mailha_lmtpd_command_seconds_count", (("command", "DELIVER"),))] == 1.0
        assert m[("mailha_lmtpd_sessions_opened_total", ())] >= 1.0  # wait_for_port connects too
    finally:
        stop(proc)


def test_imapd_metrics(servers: LocalServers, tmp_path: pathlib.Path) -> None:
    port, mport = free_port(), free_port()
    argv: tuple[str, ...] = (sys.executable, "-m", "mailha.cli", "imapd", "serve", "--store", servers.store, "--epoch")
    argv += (str(servers.epoch), "--listen", f"127.0.0.1:{port}", "--allow-plaintext-login")
    argv += ("--metrics-listen", f"127.0.0.1:{mport}")
    proc = _start(argv, tmp_path / "imapd.log", port)
    try:
        imap = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        with pytest.raises(imaplib.IMAP4.error):
            imap.login("dora", "wrong")
        imap.login("dora", "dora-pw")
        imap.select("INBOX")
        imap.append("INBOX", None, None, b"Subject: a\r\n\r\nappended\r\n")
        imap.logout()
        deadline = time.monotonic() + 5
        while (m := _samples(mport)).get(("mailha_imapd_sessions", ())) != 0.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert m[("mailha_imapd_sessions", ())] == 0.0
        assert m[("mailha_imapd_sessions_opened_total", ())] >= 1.0
        assert m[("mailha_imapd_commands_total", (("command", "LOGIN"), ("result", "NO")))] == 1.0
        assert m[("mailha_imapd_commands_total", (("command", "LOGIN"), ("result", "OK")))] == 1.0
        assert m[("mailha_imapd_commands_total", (("command", "APPEND"), ("result", "OK")))] == 1.0
        assert m[("mailha_imapd_command_seconds_count", (("command", "SELECT"),))] == 1.0
    finally:
        stop(proc)
