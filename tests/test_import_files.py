"""mbox and Maildir import: parsing without a store, then into a real store."""

from __future__ import annotations

import io
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import pytest

from importer.maildir import DateFrom, MaildirSource, flags_from_name
from importer.mbox import MboxSource, from_line_date, split_flag_headers, with_flag_headers
from importer.run import run_import
from importer.store_sink import StoreSink
from lmtpd.local_servers import LocalServers, local_servers
from mailha_api import store_pb2
from store.client import StoreClient

MBOX = (
    b"From alice@x.test Sat Nov 28 17:41:19 2026\n"
    b"From: alice@x.test\nSubject: one\nStatus: RO\nX-Status: AF\n\n"
    b"Hello\n>From the quoted line\n>>From twice quoted\nFrom inside a paragraph stays\n\n"
    b"From bob@x.test Mon Jan  5 08:00:00 2026\n"
    b"From: bob@x.test\nSubject: two\n\nsecond body\n\n"
    b"From nobody Sun Feb  1 10:00:00 2026\n"
    b"this message has no header at all\n"
)


def test_mbox_parsing_unquotes_and_dates(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "in.mbox"
    path.write_bytes(MBOX)
    src = MboxSource(path)
    (folder,) = list(src.folders())
    one, two, three = list(src.messages(folder))
    # Status/X-Status are mbox metadata: flags, not part of the message (as in Dovecot).
    assert one.data == (
        b"From: alice@x.test\r\nSubject: one\r\n\r\n"
        b"Hello\r\nFrom the quoted line\r\n>From twice quoted\r\nFrom inside a paragraph stays\r\n"
    )
    assert set(one.flags) == {"\\Seen", "\\Answered", "\\Flagged"}
    assert one.internal_date == 1795887679  # 2026-11-28T17:41:19Z
    assert two.data == b"From: bob@x.test\r\nSubject: two\r\n\r\nsecond body\r\n"
    assert two.flags == ()
    assert two.internal_date == from_line_date(b"From bob@x.test Mon Jan  5 08:00:00 2026")
    assert one.problems == two.problems == ()
    assert three.problems  # no header: imported, but reported


@pytest.mark.parametrize(
    "data",
    [
        b"From: a@x.test\r\nSubject: s\r\n\r\nbody\r\n",
        b"Subject: folded\r\n  on two lines\r\n\r\nbody\r\nStatus: RO in the body stays\r\n",
        b"\r\nno header at all\r\n",
        b"no empty line after this header-like text\r\n",
        b" starts with white space, no empty line\r\n",
        b"",
    ],
)
def test_mbox_flag_headers_round_trip_bytes_and_flags(data: bytes) -> None:
    flags = ("\\Seen", "\\Answered", "\\Deleted", "$Label1", "Work")
    written = with_flag_headers(data, flags)
    got_flags, got = split_flag_headers(written)
    assert got == data
    if written != data:  # only the white-space case writes none (they would fold its first line)
        assert set(got_flags) == set(flags)
    else:
        assert data.startswith(b" ")


def test_mbox_flag_headers_replace_old_ones_and_bound_keywords() -> None:
    old = b"Subject: s\r\nStatus: RO\r\nX-Status: F\r\n\r\nbody\r\n"
    assert with_flag_headers(old, ()) == b"Subject: s\r\nStatus: O\r\n\r\nbody\r\n"
    hostile = b"X-Keywords: " + b" ".join(b"k%d" % n for n in range(10_000)) + b"\r\n\r\nbody\r\n"
    flags, data = split_flag_headers(hostile)
    assert len(flags) == 100 and data == b"\r\nbody\r\n"


def test_maildir_flag_letters() -> None:
    keywords = {"a": "$Label1", "b": "Work"}
    assert flags_from_name("1700000000.M1P2.host:2,FRS", keywords) == ("\\Flagged", "\\Answered", "\\Seen")
    assert flags_from_name("1700000000.M1P2.host:2,DTab", keywords) == ("\\Draft", "\\Deleted", "$Label1", "Work")
    assert flags_from_name("1700000000.M1P2.host:2,P", keywords) == ("$Forwarded",)
    assert flags_from_name("1700000000.M1P2.host", keywords) == ()


def make_maildir(root: pathlib.Path) -> None:
    def put(folder: pathlib.Path, sub: str, name: str, body: bytes, mtime: int) -> None:
        for d in ("cur", "new", "tmp"):
            (folder / d).mkdir(parents=True, exist_ok=True)
        path = folder / sub / name
        path.write_bytes(body)
        os.utime(path, (mtime, mtime))

    put(root, "cur", "1600000000.M1.h:2,S", b"Subject: inbox seen\n\nbody\n", 1600000100)
    put(root, "new", "1600000200.M2.h", b"Subject: inbox new\n\nbody\n", 1600000300)
    put(root / ".Work", "cur", "1600000400.M3.h:2,FR", b"Subject: work\n\nbody\n", 1600000500)
    put(root / ".Work.Projects", "cur", "1600000600.M4.h:2,Sa", b"Subject: projects\n\nbody\n", 1600000700)
    (root / ".Work.Projects" / "dovecot-keywords").write_text("0 $Important\n")
    put(root / ".Entw&APw-rfe", "cur", "1600000800.M5.h:2,D", b"Subject: draft\n\nbody\n", 1600000900)
    put(root / ".Broken", "cur", "1600001000.M6.h:2,", b"no header here, just text\n", 1600001100)
    (root / "tmp" / "1600009999.M9.h").write_bytes(b"Subject: in progress\n\n")


def test_maildir_tree_folders_and_dates(tmp_path: pathlib.Path) -> None:
    make_maildir(tmp_path)
    src = MaildirSource(tmp_path)
    folders = [f.name for f in src.folders()]
    assert folders == ["INBOX", "Broken", "Entwürfe", "Work", "Work/Projects"]
    inbox = list(src.messages(next(f for f in src.folders() if f.name == "INBOX")))
    assert [m.data.split(b"\r\n")[0] for m in inbox] == [b"Subject: inbox seen", b"Subject: inbox new"]
    assert [m.internal_date for m in inbox] == [1600000100, 1600000300]
    by_name = MaildirSource(tmp_path, DateFrom.NAME)
    inbox2 = list(by_name.messages(next(f for f in by_name.folders() if f.name == "INBOX")))
    assert [m.internal_date for m in inbox2] == [1600000000, 1600000200]
    assert src.estimate() == (6, None)


# ---- into a real store -------------------------------------------------------


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServers]:
    with local_servers(tmp_path_factory.mktemp("import"), max_message_size=1024 * 1024) as srv:
        yield srv


def _contents(client: StoreClient, user: str, mailbox: str) -> list[tuple[bytes, set[str], int]]:
    box = client.mailbox_id(user, mailbox)
    uids = list(client.select(user, mailbox).uids)
    metas = {m.uid: m for m in client.fetch_meta(user, box, "1:*")} if uids else {}
    return [(client.fetch_body(user, box, u), set(metas[u].flags), metas[u].internal_date) for u in uids]


@pytest.mark.integration
def test_maildir_import_into_store(servers: LocalServers, tmp_path: pathlib.Path) -> None:
    make_maildir(tmp_path)
    out = io.StringIO()
    with StoreClient(servers.store) as client:
        client.create_user("md", "md-pw", epoch=servers.epoch)
        report = run_import(MaildirSource(tmp_path), StoreSink(client, "md", servers.epoch), out=out)
        assert (report.folders, report.messages, report.skipped, report.errors) == (5, 6, 0, [])
        assert len(report.broken) == 1 and "Broken" in report.broken[0]
        inbox = _contents(client, "md", "INBOX")
        assert inbox == [
            (b"Subject: inbox seen\r\n\r\nbody\r\n", {"\\Seen"}, 1600000100),
            (b"Subject: inbox new\r\n\r\nbody\r\n", set(), 1600000300),
        ]
        assert _contents(client, "md", "Work") == [
            (b"Subject: work\r\n\r\nbody\r\n", {"\\Flagged", "\\Answered"}, 1600000500)
        ]
        (proj,) = _contents(client, "md", "Work/Projects")
        assert proj[1] == {"\\Seen", "$Important"}
        (draft,) = _contents(client, "md", "Entwürfe")
        assert draft[1] == {"\\Draft"}
        (broken,) = _contents(client, "md", "Broken")
        assert broken[0] == b"no header here, just text\r\n"
        listed = client.stub.ListMailboxes(store_pb2.ListMailboxesRequest(user="md", subscribed_only=True))
        assert {"Work", "Work/Projects", "Entwürfe", "Broken"} <= {m.name for m in listed.mailboxes}
    summary = out.getvalue()
    assert "5 folders, 6 messages" in summary
    assert "1 malformed messages were imported as they are" in summary


@pytest.mark.integration
def test_mbox_import_cli_into_store(servers: LocalServers, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "in.mbox"
    big = b"From x Sat Nov 28 17:41:19 2026\nSubject: too big\n\n" + b"z" * (2 * 1024 * 1024) + b"\n\n"
    path.write_bytes(MBOX + b"\n" + big)
    with StoreClient(servers.store) as client:
        client.create_user("mb", "mb-pw", epoch=servers.epoch)
    argv = ["import", "mbox", str(path), "--user", "mb", "--mailbox", "Archive/2026", "--store", servers.store]
    proc = subprocess.run(
        [sys.executable, "-m", "mailha.cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # The 2 MiB message is over this store's 1 MiB limit: reported, not dropped silently, exit 1.
    assert proc.returncode == 1, proc.stderr
    assert "3 messages" in proc.stderr
    assert "1 errors" in proc.stderr
    assert "message 4" in proc.stderr and "NOT imported" in proc.stderr
    with StoreClient(servers.store) as client:
        stored = _contents(client, "mb", "Archive/2026")
    assert [s[0].split(b"\r\n")[1] for s in stored[:2]] == [b"Subject: one", b"Subject: two"]
    assert b"\r\nFrom the quoted line\r\n>From twice quoted\r\n" in stored[0][0]
    assert stored[0][2] == 1795887679


@pytest.mark.integration
def test_import_window_in_bytes_keeps_order(servers: LocalServers, tmp_path: pathlib.Path) -> None:
    """Messages larger than the byte window still go (one at a time); more than the count window
    are kept in order; every one is acknowledged."""
    lines = []
    for n in range(40):
        body = (b"x" * (3000 if n % 10 else 200_000)) + b"\n"
        lines.append(b"From a Sat Nov 28 17:41:19 2026\nSubject: m%d\n\n" % n + body + b"\n")
    path = tmp_path / "w.mbox"
    path.write_bytes(b"".join(lines))
    with StoreClient(servers.store) as client:
        client.create_user("win", "win-pw", epoch=servers.epoch)
        sink = StoreSink(client, "win", servers.epoch, window=7, window_bytes=100_000)
        report = run_import(MboxSource(path), sink, out=io.StringIO())
        assert (report.messages, report.errors) == (40, [])
        subjects = [body.split(b"\r\n", 1)[0] for body, _, _ in _contents(client, "win", "INBOX")]
        assert subjects == [b"Subject: m%d" % n for n in range(40)]
