"""`mailha import imap`: every folder with flags and dates; a second run copies only what is new.

The source is a small in-test IMAP server (tests/import_fake_imap.py); the
destination is a real store process.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import pytest

from lmtpd.local_servers import LocalServers, local_servers
from store.client import StoreClient
from tests.import_fake_imap import FakeAccount, FakeFolder, FakeImapServer, FakeMessage

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServers]:
    with local_servers(tmp_path_factory.mktemp("imapimport"), max_message_size=1024 * 1024) as srv:
        with StoreClient(srv.store) as client:
            client.create_user("dest", "dest-pw", epoch=srv.epoch)
        yield srv


def _account() -> FakeAccount:
    account = FakeAccount("old", "s3cret pass")
    inbox = FakeFolder(uidvalidity=777)
    inbox.add(FakeMessage(b"Subject: a\r\n\r\nfirst\r\n", ("\\Seen", "\\Recent"), "01-Feb-2024 10:00:00 +0100"))
    inbox.add(FakeMessage(b"Subject: b\n\nbare lf body\n", ("\\Answered", "$Work"), "02-Feb-2024 11:30:00 -0500"))
    inbox.add(FakeMessage(b"Subject: c\r\n\r\nthird\r\n", (), "03-Feb-2024 12:00:00 +0000"))
    account.folders["INBOX"] = inbox
    account.folders["Archive"] = FakeFolder(uidvalidity=1, noselect=True)
    year = FakeFolder(uidvalidity=42)
    year.add(FakeMessage(b"Subject: old\r\n\r\narchived\r\n", ("\\Seen", "\\Flagged"), "31-Dec-2025 23:59:59 +0000"))
    account.folders["Archive.2025"] = year
    drafts = FakeFolder(uidvalidity=9)
    drafts.add(FakeMessage(b"not a header line\r\n", ("\\Draft",), "04-Feb-2024 08:00:00 +0000"))
    account.folders["Entw&APw-rfe"] = drafts
    return account


def _import(
    servers: LocalServers, port: int, tmp: pathlib.Path, *, to_user: str = "dest"
) -> subprocess.CompletedProcess[str]:
    (tmp / "pw").write_text("s3cret pass\n")
    argv = ["import", "imap", "--host", "127.0.0.1", "--port", str(port), "--user", "old", "--insecure-plaintext"]
    argv += ["--password-file", str(tmp / "pw"), "--to-user", to_user, "--state-dir", str(tmp / "state")]
    argv += ["--store", servers.store]
    return subprocess.run(
        [sys.executable, "-m", "mailha.cli", *argv], capture_output=True, text=True, timeout=60, check=False
    )


def _store_view(servers: LocalServers, mailbox: str) -> list[tuple[bytes, set[str], int, int]]:
    with StoreClient(servers.store) as client:
        box = client.mailbox_id("dest", mailbox)
        metas = client.fetch_meta("dest", box, "1:*")
        return [
            (client.fetch_body("dest", box, m.uid), set(m.flags), m.internal_date, m.tz_offset_minutes) for m in metas
        ]


def test_imap_import_and_resume(servers: LocalServers, tmp_path: pathlib.Path) -> None:
    account = _account()
    with FakeImapServer(account) as source:
        first = _import(servers, source.port, tmp_path)
        assert first.returncode == 0, first.stderr
        assert "3 folders, 5 messages" in first.stderr
        assert "0 skipped, 0 errors" in first.stderr
        assert "1 malformed messages were imported as they are" in first.stderr
        inbox = _store_view(servers, "INBOX")
        assert inbox == [
            (b"Subject: a\r\n\r\nfirst\r\n", {"\\Seen"}, 1706778000, 60),
            (b"Subject: b\r\n\r\nbare lf body\r\n", {"\\Answered", "$Work"}, 1706891400, -300),
            (b"Subject: c\r\n\r\nthird\r\n", set(), 1706961600, 0),
        ]
        assert [(v[0], v[1]) for v in _store_view(servers, "Archive/2025")] == [
            (b"Subject: old\r\n\r\narchived\r\n", {"\\Seen", "\\Flagged"})
        ]
        assert [v[1] for v in _store_view(servers, "Entwürfe")] == [{"\\Draft"}]
        (state_file,) = (tmp_path / "state").iterdir()
        state = json.loads(state_file.read_text())
        assert state["folders"]["INBOX"] == {"uidvalidity": 777, "last_uid": 3, "above": []}

        # New mail at the source; the second run copies only that.
        account.folders["INBOX"].add(
            FakeMessage(b"Subject: d\r\n\r\nnew\r\n", ("\\Flagged",), "05-Feb-2024 09:00:00 +0000")
        )
        fetched_before = account.fetches
        second = _import(servers, source.port, tmp_path)
        assert second.returncode == 0, second.stderr
        assert "3 folders, 1 messages" in second.stderr
        assert "5 skipped, 0 errors" in second.stderr
        assert account.fetches - fetched_before == 1
        assert [v[0] for v in _store_view(servers, "INBOX")][-2:] == [
            b"Subject: c\r\n\r\nthird\r\n",
            b"Subject: d\r\n\r\nnew\r\n",
        ]
        assert len(_store_view(servers, "INBOX")) == 4

        # The source folder was recreated (new UIDVALIDITY): copied again, and the report says so.
        account.folders["Archive.2025"].uidvalidity = 43
        third = _import(servers, source.port, tmp_path)
        assert third.returncode == 0, third.stderr
        assert "UIDVALIDITY changed (42 -> 43)" in third.stderr
        assert len(_store_view(servers, "Archive/2025")) == 2


def test_imap_import_wrong_password_fails_cleanly(servers: LocalServers, tmp_path: pathlib.Path) -> None:
    account = _account()
    account.password = "other"
    with FakeImapServer(account) as source:
        result = _import(servers, source.port, tmp_path)
    assert result.returncode == 2
    assert "mailha import: IMAP 127.0.0.1" in result.stderr
    assert "s3cret" not in result.stderr  # the password never shows up in output


def test_refused_message_is_retried_and_later_copies_are_not_repeated(
    servers: LocalServers, tmp_path: pathlib.Path
) -> None:
    with StoreClient(servers.store) as client:
        client.create_user("dest2", "pw", epoch=servers.epoch)
    account = FakeAccount("old", "s3cret pass")
    inbox = FakeFolder(uidvalidity=5)
    inbox.add(FakeMessage(b"Subject: 1\r\n\r\none\r\n", (), "01-Feb-2024 10:00:00 +0000"))
    big = b"Subject: 2\r\n\r\n" + b"x" * (2 * 1024 * 1024) + b"\r\n"  # over this store's 1 MiB limit
    inbox.add(FakeMessage(big, (), "01-Feb-2024 10:00:00 +0000"))
    inbox.add(FakeMessage(b"Subject: 3\r\n\r\nthree\r\n", (), "01-Feb-2024 10:00:00 +0000"))
    account.folders["INBOX"] = inbox
    with FakeImapServer(account) as source:
        first = _import(servers, source.port, tmp_path, to_user="dest2")
        assert first.returncode == 1
        assert "1 folders, 2 messages" in first.stderr and "1 errors" in first.stderr
        assert "INBOX: UID 2: " in first.stderr and "NOT imported" in first.stderr
        (state_file,) = (tmp_path / "state").iterdir()
        assert json.loads(state_file.read_text())["folders"]["INBOX"] == {"uidvalidity": 5, "last_uid": 1, "above": [3]}
        fetched = account.fetches
        second = _import(servers, source.port, tmp_path, to_user="dest2")
        assert second.returncode == 1
        assert "0 messages" in second.stderr and "2 skipped, 1 errors" in second.stderr
        assert account.fetches - fetched == 1  # only UID 2 was fetched again
    with StoreClient(servers.store) as client:
        assert len(client.select("dest2", "INBOX").uids) == 2
