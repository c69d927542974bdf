"""What every import source yields: folders of messages with flags and dates."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

CRLF = b"\r\n"


@dataclass(frozen=True)
class SourceMessage:
    data: bytes  # CRLF line ends
    flags: tuple[str, ...] = ()
    internal_date: int = 0  # unix seconds; 0 = now
    tz_offset_minutes: int = 0
    origin: str = ""  # where it came from, for reports ("INBOX/cur/123.host:2,S", "mbox #17")
    uid: int = 0  # IMAP sources: the source UID (resume marker)
    problems: tuple[str, ...] = field(default=())  # why it looks broken; imported anyway


@dataclass(frozen=True)
class SourceFolder:
    name: str  # store mailbox name, "/" as delimiter
    skipped: int = 0  # messages already copied by an earlier run
    note: str = ""  # something the report should mention about this folder


class ImportSource(Protocol):
    def folders(self) -> Iterator[SourceFolder]:
        """Folders in an order where parents come before children."""
        ...

    def messages(self, folder: SourceFolder) -> Iterator[SourceMessage]: ...

    def estimate(self) -> tuple[int | None, int | None]:
        """(messages, bytes) to expect, where cheap to know; for the progress bar."""
        ...

    def acknowledged(self, folder: SourceFolder, message: SourceMessage) -> None:
        """The store holds `message` durably (resumable sources record it)."""
        ...

    def refused(self, folder: SourceFolder, message: SourceMessage) -> None:
        """The store refused `message`; it is reported, and a resumed run tries it again."""
        ...

    def take_unread(self) -> list[str]:
        """Entries skipped without reading since the last call ("path: why"), for the report."""
        ...


def to_crlf(data: bytes) -> bytes:
    """Bare LF -> CRLF, existing CRLF kept (files on disk usually hold LF)."""
    if b"\n" not in data:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def problems_of(data: bytes) -> tuple[str, ...]:
    """Why a message looks malformed. It is imported as it is; this goes in the report."""
    found: list[str] = []
    if not data.strip():
        return ("empty message",)
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[:end]
    if end < 0:
        found.append("no blank line between header and body")
    first = head.split(b"\r\n", 1)[0]
    name, colon, _ = first.partition(b":")
    if not colon or not name or any(c <= 32 or c >= 127 for c in name):
        found.append("does not start with a header field")
    if b"\x00" in data:
        found.append("contains NUL bytes")
    return tuple(found)
