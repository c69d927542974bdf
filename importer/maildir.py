"""A Maildir tree as an import source.

Folders: the top directory is INBOX; Maildir++ sub-folders ".Sub.Folder"
become "Sub/Folder" (names in IMAP modified UTF-7, as Dovecot and Courier
write them, are decoded); plain nested Maildirs (Dovecot LAYOUT=fs) are
found too. Messages come from cur/ and new/ (tmp/ holds deliveries in
progress and is skipped), oldest first.

Flags from the info part of the file name (":2,<letters>", maildir spec):
D \\Draft, F \\Flagged, P $Forwarded, R \\Answered (IMAP's flag for
"replied"), S \\Seen, T \\Deleted; lower-case letters are Dovecot keywords
named in the folder's dovecot-keywords file. The internal date is the file's
mtime (Dovecot and mbsync keep the received date there) or, with
date_from="name", the delivery timestamp that starts the file name.

Symbolic links are never followed, neither to files nor to directories
(a link in cur/ could import /etc/shadow into a mailbox; a directory link
could walk the whole file system or loop): each is skipped, reported in the
summary, and the import goes on. Files are opened with O_NOFOLLOW and must
be regular files once open, so a link swapped in later is refused too.
"""

from __future__ import annotations

import enum
import os
import pathlib
import stat
from collections.abc import Iterator

from imapclient import imap_utf7

from importer.source import SourceFolder, SourceMessage, problems_of, to_crlf

_INFO_FLAGS = {"D": "\\Draft", "F": "\\Flagged", "P": "$Forwarded", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}


class DateFrom(enum.Enum):
    MTIME = "mtime"
    NAME = "name"


def _real_dir(path: pathlib.Path) -> bool:
    """A directory, and not through a symbolic link."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _is_maildir(path: pathlib.Path) -> bool:
    return _real_dir(path / "cur") or _real_dir(path / "new")


_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def read_regular_file(path: str) -> tuple[bytes, os.stat_result]:
    """Bytes and status of a regular file; OSError for a symlink, FIFO, device or directory."""
    fd = os.open(path, _OPEN_FLAGS)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"not a regular file (mode {stat.filemode(info.st_mode)})")
        return f.read(), info


def _decode_name(name: str) -> str:
    if "&" not in name:
        return name
    try:
        return str(imap_utf7.decode(name.encode("ascii")))
    except (UnicodeError, ValueError):
        return name  # not valid mUTF-7: keep the name as written


def folder_name(parts: list[str]) -> str:
    name = "/".join(_decode_name(p) for p in parts)
    return "INBOX" if name.upper() == "INBOX" else name


def flags_from_name(filename: str, keywords: dict[str, str]) -> tuple[str, ...]:
    _, sep, info = filename.rpartition(":2,")
    if not sep:
        return ()
    flags: list[str] = []
    for letter in info:
        flag = _INFO_FLAGS.get(letter) or keywords.get(letter)
        if flag and flag not in flags:
            flags.append(flag)
    return tuple(flags)


def read_keywords(folder: pathlib.Path) -> dict[str, str]:
    """Dovecot's dovecot-keywords: '0 $Label1' lines; 0 -> 'a', 1 -> 'b', ..."""
    path = folder / "dovecot-keywords"
    out: dict[str, str] = {}
    try:
        text = read_regular_file(str(path))[0].decode("utf-8", "replace")
    except OSError:
        return out
    for line in text.splitlines():
        index, _, name = line.partition(" ")
        if index.isdigit() and int(index) < 26 and name.strip():
            out[chr(ord("a") + int(index))] = name.strip()
    return out


def _name_timestamp(filename: str) -> int:
    head = filename.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


class MaildirSource:
    def __init__(self, root: pathlib.Path, date_from: DateFrom = DateFrom.MTIME) -> None:
        self.root = root
        self.date_from = date_from
        self._dirs: dict[str, pathlib.Path] = {}
        self._unread: list[str] = []  # entries skipped without reading, with the reason

    def folders(self) -> Iterator[SourceFolder]:
        found: dict[str, pathlib.Path] = {}
        if _is_maildir(self.root):
            found["INBOX"] = self.root
        for path, parts in self._walk(self.root, []):
            found.setdefault(folder_name(parts), path)
        self._dirs = found
        for name in sorted(found, key=lambda n: (n != "INBOX", n.split("/"))):
            yield SourceFolder(name)

    def _walk(self, base: pathlib.Path, prefix: list[str]) -> Iterator[tuple[pathlib.Path, list[str]]]:
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.is_symlink():
                if entry.name != "tmp":  # tmp/ is never read anyway
                    self._skip(entry.path, "symbolic link, not followed")
                continue
            if not entry.is_dir(follow_symlinks=False) or entry.name in ("cur", "new", "tmp"):
                continue
            path = pathlib.Path(entry.path)
            if entry.name.startswith(".") and not prefix:
                if entry.name in (".", "..") or not _is_maildir(path):
                    continue
                yield path, [p for p in entry.name[1:].split(".") if p]
            elif not entry.name.startswith("."):
                parts = [*prefix, entry.name]
                if _is_maildir(path):
                    yield path, parts
                yield from self._walk(path, parts)

    def _skip(self, path: str, reason: str) -> None:
        self._unread.append(f"{os.path.relpath(path, self.root)}: {reason}")

    def take_unread(self) -> list[str]:
        unread, self._unread = self._unread, []
        return unread

    def estimate(self) -> tuple[int | None, int | None]:
        if not self._dirs:
            list(self.folders())
        count = 0
        for directory in self._dirs.values():
            for sub in ("cur", "new"):
                try:
                    if _real_dir(directory / sub):
                        count += sum(1 for e in os.scandir(directory / sub) if not e.name.startswith("."))
                except OSError:
                    continue
        return count, None

    def acknowledged(self, folder: SourceFolder, message: SourceMessage) -> None:
        return None

    def refused(self, folder: SourceFolder, message: SourceMessage) -> None:
        return None

    def messages(self, folder: SourceFolder) -> Iterator[SourceMessage]:
        directory = self._dirs[folder.name]
        keywords = read_keywords(directory)
        files: list[os.DirEntry[str]] = []
        for sub in ("cur", "new"):
            if not _real_dir(directory / sub):
                continue  # absent, or a link (reported by the walk)
            try:
                entries = list(os.scandir(directory / sub))
            except OSError as exc:
                self._skip(str(directory / sub), f"cannot read: {exc.strerror or exc}")
                continue
            for e in entries:
                if e.name.startswith("."):
                    continue
                if e.is_file(follow_symlinks=False):
                    files.append(e)
                elif e.is_symlink():
                    self._skip(e.path, "symbolic link, not followed")
                else:
                    self._skip(e.path, "not a regular file")
        files.sort(key=lambda e: (_name_timestamp(e.name), e.name))
        for entry in files:
            try:
                raw, info = read_regular_file(entry.path)
            except OSError as exc:
                self._skip(entry.path, f"not read: {exc.strerror or exc}")
                continue
            data = to_crlf(raw)
            if self.date_from is DateFrom.NAME and _name_timestamp(entry.name):
                date = _name_timestamp(entry.name)
            else:
                date = int(info.st_mtime)
            yield SourceMessage(
                data=data,
                flags=flags_from_name(entry.name, keywords),
                internal_date=date,
                origin=os.path.relpath(entry.path, self.root),
                problems=problems_of(data),
            )
