"""Another IMAP server as an import source (imapclient), resumable.

Every selectable folder is copied with its flags (\\Recent, which a server
sets and a client cannot, is dropped) and internal dates. Folder names are
mapped from the source's hierarchy delimiter to "/". Messages are fetched
in batches of `batch` UIDs, read-only (BODY.PEEK), so the source's \\Seen
flags are not touched. See importer.resume_state for how a second run
copies only what is missing.
"""

from __future__ import annotations

import contextlib
import datetime
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

from imapclient import IMAPClient

from importer.errors import ImportFailure
from importer.resume_state import ResumeState
from importer.source import SourceFolder, SourceMessage, problems_of, to_crlf


@dataclass(frozen=True)
class ImapSourceOptions:
    host: str
    port: int
    user: str
    password: str
    tls: bool = False  # implicit TLS
    starttls: bool = False  # plain connection upgraded with STARTTLS before LOGIN
    ca_file: str | None = None
    batch: int = 50
    timeout: float = 60.0


@dataclass(frozen=True)
class _Folder:
    source_name: str
    uidvalidity: int
    uids: tuple[int, ...]  # still to copy


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def map_name(name: str, delimiter: str | None) -> str:
    if name.upper() == "INBOX":
        return "INBOX"
    if delimiter and delimiter != "/":
        name = name.replace(delimiter, "/")
    return name


def _epoch_and_tz(value: object) -> tuple[int, int]:
    if not isinstance(value, datetime.datetime):
        return 0, 0
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    offset = value.utcoffset() or datetime.timedelta(0)
    return int(value.timestamp()), int(offset.total_seconds() // 60)


@contextlib.contextmanager
def _imap_errors(options: ImapSourceOptions) -> Iterator[None]:
    """IMAP and socket errors of the source end the import with a clear message."""
    try:
        yield
    except (OSError, IMAPClient.Error, IMAPClient.AbortError) as exc:
        raise ImportFailure(f"IMAP {options.host}:{options.port}: {exc}") from exc


class ImapSource:
    def __init__(self, options: ImapSourceOptions, state: ResumeState) -> None:
        self.options = options
        self.state = state
        context = None
        if options.tls or options.starttls:
            context = ssl.create_default_context(cafile=options.ca_file)
        try:
            self.client = IMAPClient(
                options.host, port=options.port, ssl=options.tls, ssl_context=context, timeout=options.timeout
            )
            if options.starttls:
                self.client.starttls(context)
            self.client.normalise_times = False  # keep the server's zone in INTERNALDATE
            self.client.login(options.user, options.password)
        except (OSError, IMAPClient.Error) as exc:
            raise ImportFailure(f"IMAP {options.host}:{options.port}: {exc}") from exc
        self._folders: dict[str, _Folder] = {}
        self._refused: set[str] = set()  # folders with a refused message in this run

    def close(self) -> None:
        try:
            self.client.logout()
        except (OSError, IMAPClient.Error):
            pass

    def _listing(self) -> list[tuple[str, str]]:
        """(source name, store name) of every selectable folder."""
        out: list[tuple[str, str]] = []
        for flags, delimiter, name in self.client.list_folders():
            if any(_text(f).lower() in ("\\noselect", "\\nonexistent") for f in flags):
                continue
            source = _text(name)
            out.append((source, map_name(source, _text(delimiter) if delimiter else None)))
        out.sort(key=lambda pair: (pair[1] != "INBOX", pair[1].split("/")))
        return out

    def estimate(self) -> tuple[int | None, int | None]:
        with _imap_errors(self.options):
            return self._estimate()

    def _estimate(self) -> tuple[int | None, int | None]:
        total = 0
        for source, _ in self._listing():
            status = self.client.folder_status(source, [b"MESSAGES"])
            total += int(status.get(b"MESSAGES", 0))
        return total, None

    def folders(self) -> Iterator[SourceFolder]:
        with _imap_errors(self.options):
            yield from self._folders_of_source()

    def _folders_of_source(self) -> Iterator[SourceFolder]:
        for source, name in self._listing():
            selected = self.client.select_folder(source, readonly=True)
            uidvalidity = int(selected.get(b"UIDVALIDITY", 0))
            everything = sorted(int(u) for u in self.client.search("ALL"))
            marker = self.state.marker(name)
            note = ""
            if marker is not None and marker.uidvalidity != uidvalidity:
                note = f"{name}: source UIDVALIDITY changed ({marker.uidvalidity} -> {uidvalidity}); copying it again"
                marker = None
            todo = tuple(u for u in everything if marker is None or not marker.copied(u))
            self._folders[name] = _Folder(source, uidvalidity, todo)
            self._refused.discard(name)
            yield SourceFolder(name, skipped=len(everything) - len(todo), note=note)

    def messages(self, folder: SourceFolder) -> Iterator[SourceMessage]:
        with _imap_errors(self.options):
            yield from self._messages_of(folder)

    def _messages_of(self, folder: SourceFolder) -> Iterator[SourceMessage]:
        info = self._folders[folder.name]
        self.client.select_folder(info.source_name, readonly=True)
        for start in range(0, len(info.uids), self.options.batch):
            batch = list(info.uids[start : start + self.options.batch])
            fetched = self.client.fetch(batch, ["FLAGS", "INTERNALDATE", "BODY.PEEK[]"])
            for uid in batch:
                item = fetched.get(uid)
                if item is None:
                    continue  # expunged at the source since the search
                data = to_crlf(bytes(item.get(b"BODY[]", b"")))
                flags = tuple(_text(f) for f in item.get(b"FLAGS", ()) if _text(f).lower() != "\\recent")
                date, tz = _epoch_and_tz(item.get(b"INTERNALDATE"))
                yield SourceMessage(
                    data=data,
                    flags=flags,
                    internal_date=date,
                    tz_offset_minutes=tz,
                    origin=f"UID {uid}",
                    uid=uid,
                    problems=problems_of(data),
                )

    def acknowledged(self, folder: SourceFolder, message: SourceMessage) -> None:
        contiguous = folder.name not in self._refused
        self.state.record(folder.name, self._folders[folder.name].uidvalidity, message.uid, contiguous=contiguous)

    def take_unread(self) -> list[str]:
        return []

    def refused(self, folder: SourceFolder, message: SourceMessage) -> None:
        # From here on the "everything up to" marker stops, so the next run retries this one.
        self._refused.add(folder.name)
