"""`mailha import imap` from a real mailha imapd (implicit TLS, then STARTTLS; verified with the dev certificate)."""

from __future__ import annotations

import pathlib
import smtplib
import subprocess
import sys

import pytest

from mailha_api import store_pb2
from store.client import StoreClient
from tests.lmtp_standalone import Node, standalone_node

pytestmark = pytest.mark.integration


def _import(node: Node, tmp: pathlib.Path, *, starttls: bool = False) -> subprocess.CompletedProcess[str]:
    (tmp / "pw").write_text("demo\n")
    if starttls:
        assert node.imap is not None
        argv = ["import", "imap", "--host", "127.0.0.1", "--port", str(node.imap[1]), "--starttls"]
    else:
        argv = ["import", "imap", "--host", "127.0.0.1", "--port", str(node.imaps_port), "--tls"]
    argv += ["--ca-file", str(node.paths.tls_dir / "imapd-dev.crt"), "--user", "demo"]
    argv += ["--password-file", str(tmp / "pw"), "--to-user", "copy", "--state-dir", str(tmp / "state")]
    argv += ["--store", node.store]
    return subprocess.run(
        [sys.executable, "-m", "mailha.cli", *argv], capture_output=True, text=True, timeout=120, check=False
    )


def _view(client: StoreClient, user: str, mailbox: str) -> list[tuple[bytes, set[str], int]]:
    box = client.mailbox_id(user, mailbox)
    return [
        (client.fetch_body(user, box, m.uid), set(m.flags), m.internal_date)
        for m in client.fetch_meta(user, box, "1:*")
    ]


def test_import_from_mailha_imapd(tmp_path: pathlib.Path) -> None:
    with standalone_node(tmp_path) as node:
        with smtplib.LMTP("127.0.0.1", node.lmtp_port, timeout=30) as lmtp:
            for i in range(3):
                lmtp.sendmail("s@x.test", ["demo@mailha.test"], f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode())
        with StoreClient(node.store) as client:
            epoch = client.epoch()
            client.stub.CreateMailbox(store_pb2.CreateMailboxRequest(epoch=epoch, user="demo", name="Work/Projects"))
            client.append_bytes(
                "demo",
                "Work/Projects",
                b"Subject: p\r\n\r\nplan\r\n",
                ["\\Flagged", "$Todo"],
                epoch,
                internal_date=1_600_000_000,
            )
            client.create_user("copy", "copy-pw", epoch=epoch)
            source_inbox = _view(client, "demo", "INBOX")

        first = _import(node, tmp_path)
        assert first.returncode == 0, first.stderr
        assert "4 messages" in first.stderr and "0 errors" in first.stderr
        with StoreClient(node.store) as client:
            assert _view(client, "copy", "INBOX") == source_inbox
            assert _view(client, "copy", "Work/Projects") == [
                (b"Subject: p\r\n\r\nplan\r\n", {"\\Flagged", "$Todo"}, 1_600_000_000)
            ]

        second = _import(node, tmp_path, starttls=True)  # same source over STARTTLS: nothing new
        assert second.returncode == 0, second.stderr
        assert "0 messages" in second.stderr and "4 skipped" in second.stderr
        with StoreClient(node.store) as client:
            assert len(_view(client, "copy", "INBOX")) == 3
