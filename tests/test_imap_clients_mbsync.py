"""Debian's isync (mbsync): a Maildir of 200 messages synced up to mailha,
then down into a fresh Maildir, with flags and bodies intact."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

from tests.imap_clients_stack import USERS, ImapStack, imap_stack

pytestmark = pytest.mark.integration
__all__ = ["imap_stack"]

COUNT = 200
# Maildir info flags we give messages, cycling: seen, flagged+seen, replied+seen, none, draft.
FLAG_CYCLE = ("S", "FS", "RS", "", "D")


def _body(i: int) -> bytes:
    text = "".join(f"line {n} of message {i}: mailha sync test\r\n" for n in range(i % 7 + 1))
    return (
        f"From: Sender {i} <s{i}@example.org>\r\nTo: alice@example.org\r\nSubject: sync message {i}\r\n"
        f"Date: Sat, 28 Nov 2026 10:{i % 60:02d}:00 +0000\r\nMessage-ID: <sync{i}@example.org>\r\n\r\n{text}"
    ).encode()


def _config(stack: ImapStack, maildir: pathlib.Path, state: pathlib.Path) -> str:
    return f"""IMAPAccount mailha
Host localhost
Port {stack.port}
User alice
Pass {USERS["alice"]}
SSLType STARTTLS
CertificateFile {stack.cert}
AuthMechs PLAIN

IMAPStore remote
Account mailha

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns INBOX
Create Both
Expunge None
Sync All
SyncState {state}/
"""


def _run_mbsync(config: pathlib.Path) -> None:
    result = subprocess.run(
        ["mbsync", "-c", str(config), "-a"], capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, f"mbsync failed: {result.stdout}\n{result.stderr}"


def _read_maildir(inbox: pathlib.Path) -> dict[bytes, str]:
    """Message-ID -> sorted maildir flags, checking each body is one we wrote."""
    out: dict[bytes, str] = {}
    for sub in ("cur", "new"):
        for path in (inbox / sub).iterdir():
            data = path.read_bytes()
            # mbsync may add an X-TUID header while uploading; bodies must match otherwise.
            data = b"".join(line for line in data.splitlines(keepends=True) if not line.startswith(b"X-TUID: "))
            mid = data.split(b"Message-ID: <", 1)[1].split(b">", 1)[0]
            i = int(mid.removeprefix(b"sync").split(b"@")[0])
            assert data.replace(b"\r\n", b"\n") == _body(i).replace(b"\r\n", b"\n"), f"body of {mid!r} changed"
            info = path.name.split(":2,", 1)[1] if ":2," in path.name else ""
            out[mid] = "".join(sorted(info))
    return out


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="isync (mbsync) is installed by scripts/bootstrap.sh")
def test_mbsync_up_then_down_keeps_bodies_and_flags(imap_stack: ImapStack, tmp_path: pathlib.Path) -> None:
    up, up_state = tmp_path / "up", tmp_path / "up-state"
    inbox = up / "INBOX"
    for sub in ("cur", "new", "tmp"):
        (inbox / sub).mkdir(parents=True)
    up_state.mkdir()
    expected: dict[bytes, str] = {}
    for i in range(COUNT):
        flags = FLAG_CYCLE[i % len(FLAG_CYCLE)]
        (inbox / "cur" / f"{1700000000 + i}.{i}_1.test:2,{flags}").write_bytes(_body(i))
        expected[b"sync%d@example.org" % i] = "".join(sorted(flags))
    config_up = tmp_path / "up.mbsyncrc"
    config_up.write_text(_config(imap_stack, up, up_state))
    _run_mbsync(config_up)

    down, down_state = tmp_path / "down", tmp_path / "down-state"
    down.mkdir()
    down_state.mkdir()
    config_down = tmp_path / "down.mbsyncrc"
    config_down.write_text(_config(imap_stack, down, down_state))
    _run_mbsync(config_down)

    got = _read_maildir(down / "INBOX")
    assert len(got) == COUNT
    assert got == expected
