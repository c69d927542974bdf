"""Issue 9.3: `mailha import maildir` followed symbolic links: a link in cur/
imported a file from outside the Maildir, directory links were walked, and a
link loop aborted the import with ELOOP. Links are now skipped, reported, and
the import goes on."""

from __future__ import annotations

import io
import os
import pathlib
from collections.abc import Iterator

import pytest

from importer.maildir import MaildirSource
from importer.run import run_import
from importer.store_sink import StoreSink
from lmtpd.local_servers import LocalServers, local_servers
from store.client import StoreClient

SECRET = b"root:$y$SECRET-HASH:19000:0:99999:7:::\n"


def _maildir(root: pathlib.Path, outside: pathlib.Path) -> None:
    for folder in (root, root / ".Work"):
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
    (root / "cur" / "1600000000.M1.h:2,S").write_bytes(b"Subject: real\n\nbody\n")
    (root / ".Work" / "cur" / "1600000100.M2.h:2,").write_bytes(b"Subject: work\n\nbody\n")
    # A file link to a secret outside the Maildir, in cur/ and in new/.
    (outside / "shadow").write_bytes(SECRET)
    os.symlink(outside / "shadow", root / "cur" / "1600000200.M3.h:2,S")
    os.symlink(outside / "shadow", root / "new" / "1600000300.M4.h")
    # A directory link to a Maildir outside (would become folder "Evil"), and a
    # Maildir++ folder whose cur/ is a link.
    evil = outside / "evil"
    (evil / "cur").mkdir(parents=True)
    (evil / "cur" / "1600000400.M5.h:2,").write_bytes(b"Subject: from outside\n\n" + SECRET)
    os.symlink(evil, root / ".Evil")
    os.symlink(evil, root / "Nested")
    (root / ".Linked").mkdir()
    os.symlink(evil / "cur", root / ".Linked" / "cur")
    # A loop in a nested (LAYOUT=fs) folder: walking it followed ".." until ELOOP.
    for sub in ("cur", "new", "tmp"):
        (root / "Sub" / sub).mkdir(parents=True)
    os.symlink("..", root / "Sub" / "loop")
    os.symlink(".", root / "self")
    # dovecot-keywords linked to the secret: its lines would become keyword names.
    os.symlink(outside / "shadow", root / ".Work" / "dovecot-keywords")


def test_symlinks_are_skipped_and_reported(tmp_path: pathlib.Path) -> None:
    root, outside = tmp_path / "Maildir", tmp_path / "outside"
    outside.mkdir()
    _maildir(root, outside)
    src = MaildirSource(root)
    folders = list(src.folders())
    assert [f.name for f in folders] == ["INBOX", "Sub", "Work"]
    bodies = [m.data for f in folders for m in src.messages(f)]
    assert bodies == [b"Subject: real\r\n\r\nbody\r\n", b"Subject: work\r\n\r\nbody\r\n"]
    unread = src.take_unread()
    for entry in (".Evil", "Nested", "self", "Sub/loop", "cur/1600000200.M3.h:2,S", "new/1600000300.M4.h"):
        assert f"{entry}: symbolic link, not followed" in unread, (entry, unread)
    assert all(SECRET.decode() not in u for u in unread)


def test_a_link_swapped_in_after_listing_is_refused(tmp_path: pathlib.Path) -> None:
    root, outside = tmp_path / "Maildir", tmp_path / "outside"
    outside.mkdir()
    (outside / "shadow").write_bytes(SECRET)
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "cur" / "1600000000.M1.h:2,").write_bytes(b"Subject: first\n\nbody\n")
    victim = root / "cur" / "1600000100.M2.h:2,"
    victim.write_bytes(b"Subject: ok\n\nbody\n")
    src = MaildirSource(root)
    (inbox,) = list(src.folders())
    messages = src.messages(inbox)
    assert next(messages).data.startswith(b"Subject: first")  # the directory is listed now
    victim.unlink()
    os.symlink(outside / "shadow", victim)  # between listing and opening
    assert list(messages) == []
    assert src.take_unread() == ["cur/1600000100.M2.h:2,: not read: Too many levels of symbolic links"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServers]:
    with local_servers(tmp_path_factory.mktemp("hostile-import"), max_message_size=1024 * 1024) as s:
        yield s


@pytest.mark.integration
def test_import_goes_on_past_links_and_lists_them(servers: LocalServers, tmp_path: pathlib.Path) -> None:
    root, outside = tmp_path / "Maildir", tmp_path / "outside"
    outside.mkdir()
    _maildir(root, outside)
    out = io.StringIO()
    with StoreClient(servers.store) as client:
        client.create_user("md", "md-pw", epoch=servers.epoch)
        report = run_import(MaildirSource(root), StoreSink(client, "md", servers.epoch), out=out)
        assert (report.folders, report.messages, report.errors) == (3, 2, [])
        box = client.mailbox_id("md", "INBOX")
        uids = list(client.select("md", "INBOX").uids)
        assert [client.fetch_body("md", box, u) for u in uids] == [b"Subject: real\r\n\r\nbody\r\n"]
    summary = out.getvalue()
    assert f"{len(report.unread)} entries were skipped without reading them:" in summary
    assert "  cur/1600000200.M3.h:2,S: symbolic link, not followed" in summary
    assert "  Sub/loop: symbolic link, not followed" in summary
