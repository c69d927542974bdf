"""`mailha export maildir|mbox`: a user's mail out of the running store, the inverse of `mailha import`.

Maildir (Maildir++ layout, what `mailha import maildir` reads): INBOX is the
top directory, "A/B" is ".A.B" (components in IMAP modified UTF-7, a "." in
a name written as "&AC4-"); one file per message named
"<internal date>.M<uid>P<mailbox id>.mailha:2,<flag letters>", its mtime the
internal date; keywords in the folder's dovecot-keywords (up to 26, as Dovecot).
The message bytes are written as stored, so export -> import is byte-identical
with flags and internal dates (not the time zone of the date: Maildir has none).

mbox (mboxrd, one file per mailbox "<name>.mbox", what `mailha import mbox`
reads): the From_ line carries the internal date (UTC); lines starting with
">*From " get one more ">". Flags travel in the mbox metadata headers
Status/X-Status/X-Keywords (mutt, Thunderbird, Dovecot), which `mailha import
mbox` reads into flags and takes out of the message again, so the round trip is
byte-identical too (a message that already carried such headers loses them:
they are mbox metadata, not mail).
"""

from __future__ import annotations

import os
import pathlib
import re
import time
from collections.abc import Iterator
from typing import Protocol

from imapclient import imap_utf7

from backup import files
from backup.errors import BackupError
from importer.mbox import with_flag_headers
from importer.progress import ImportReport, Progress
from mailha_api import store_pb2
from store.client import StoreClient

MAILDIR_LETTERS = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "$Forwarded": "P",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
NOT_EXPORTED = frozenset({"\\Recent"})
_FROM = re.compile(rb"^>*From ")


class FolderWriter(Protocol):
    def add(self, meta: store_pb2.MessageMeta, data: bytes) -> None: ...

    def close(self) -> None: ...


def fetch_all(client: StoreClient, user: str, mailbox_id: int) -> Iterator[tuple[store_pb2.MessageMeta, bytes]]:
    """Every message of a mailbox with its body, in UID order, from one Fetch stream (one snapshot)."""
    req = store_pb2.FetchRequest(user=user, mailbox_id=mailbox_id, uid_set="1:*", with_body=True)
    meta: store_pb2.MessageMeta | None = None
    parts: list[bytes] = []
    for response in client.stub.Fetch(req, timeout=None):
        if response.HasField("meta"):
            meta, parts = response.meta, []
        elif response.HasField("chunk"):
            parts.append(response.chunk.data)
            if response.chunk.last:
                assert meta is not None, "the store sent a body before its meta"
                yield meta, b"".join(parts)
                meta = None


def maildir_folder_dir(root: pathlib.Path, name: str) -> pathlib.Path:
    if name == "INBOX":
        return root
    parts = [imap_utf7.encode(p).decode("ascii").replace(".", "&AC4-") for p in name.split("/")]
    return root / ("." + ".".join(parts))


class MaildirFolder:
    def __init__(self, root: pathlib.Path, name: str, mailbox_id: int, report: ImportReport) -> None:
        self.dir = maildir_folder_dir(root, name)
        self.name = name
        self.mailbox_id = mailbox_id
        self.report = report
        for sub in ("cur", "new", "tmp"):
            files.private_dir(self.dir / sub)
        self.keywords: dict[str, str] = {}  # keyword -> letter

    def _letters(self, flags: list[str]) -> str:
        letters: set[str] = set()
        for flag in flags:
            if flag in NOT_EXPORTED:
                continue
            letter = MAILDIR_LETTERS.get(flag)
            if letter is None and not flag.startswith("\\"):
                letter = self.keywords.get(flag)
                if letter is None and len(self.keywords) < 26:
                    letter = self.keywords[flag] = chr(ord("a") + len(self.keywords))
            if letter is None:
                self.report.notes.append(f"{self.name}: flag {flag} not kept (Maildir has no letter for it)")
                continue
            letters.add(letter)
        return "".join(sorted(letters))

    def add(self, meta: store_pb2.MessageMeta, data: bytes) -> None:
        base = f"{meta.internal_date}.M{meta.uid:010d}P{self.mailbox_id}.mailha"
        tmp = self.dir / "tmp" / base
        files.write_private(tmp, data)
        os.utime(tmp, (meta.internal_date, meta.internal_date))
        os.rename(tmp, self.dir / "cur" / f"{base}:2,{self._letters(list(meta.flags))}")

    def close(self) -> None:
        if self.keywords:
            lines = [
                f"{ord(letter) - ord('a')} {kw}" for kw, letter in sorted(self.keywords.items(), key=lambda i: i[1])
            ]
            files.write_private(self.dir / "dovecot-keywords", ("\n".join(lines) + "\n").encode())


def mbox_entry(meta: store_pb2.MessageMeta, data: bytes) -> bytes:
    """One message as mboxrd: From_ line with the internal date, flag headers, quoted From lines."""
    stamp = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(meta.internal_date))
    out = [f"From MAILER-DAEMON {stamp}\n".encode()]
    flags = [f for f in meta.flags if f not in NOT_EXPORTED]
    for line in with_flag_headers(data, flags).splitlines(keepends=True):
        out.append(b">" + line if _FROM.match(line) else line)
    if not data.endswith(b"\n"):
        out.append(b"\n")
    out.append(b"\n")
    return b"".join(out)


class MboxFolder:
    def __init__(self, root: pathlib.Path, name: str) -> None:
        path = root.joinpath(*name.split("/"))
        path = path.with_name(f"{path.name}.mbox")
        files.private_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, files.FILE_MODE)
        self.f = os.fdopen(fd, "wb")

    def add(self, meta: store_pb2.MessageMeta, data: bytes) -> None:
        self.f.write(mbox_entry(meta, data))

    def close(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()


def export_user(client: StoreClient, user: str, kind: str, root: pathlib.Path, progress: Progress) -> ImportReport:
    if root.exists() and any(root.iterdir()):
        raise BackupError(f"{root}: not empty; export writes into a new directory")
    files.private_dir(root)
    report = progress.report
    reply = client.stub.ListMailboxes(store_pb2.ListMailboxesRequest(user=user), timeout=client.timeout)
    for info in reply.mailboxes:
        if info.noselect:
            continue
        progress.folder = info.name
        writer: FolderWriter = (
            MaildirFolder(root, info.name, info.mailbox_id, report)
            if kind == "maildir"
            else MboxFolder(root, info.name)
        )
        report.folders += 1
        try:
            for meta, data in fetch_all(client, user, info.mailbox_id):
                writer.add(meta, data)
                report.messages += 1
                report.bytes += len(data)
                progress.update()
        finally:
            writer.close()
    return report
