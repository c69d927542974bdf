"""The manifest of one backup: what it holds, of which snapshot, with the checksum of every file.

Every manifest (full or incremental) lists every mailbox of its snapshot with
UIDVALIDITY/UIDNEXT/HIGHESTMODSEQ: the next incremental starts from these
modseqs, and verify compares a restored store against them.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from dataclasses import asdict, dataclass, field
from typing import Any

from backup.errors import Damaged

MANIFEST = "manifest.json"
FORMAT = 1
FULL = "full"
INCREMENTAL = "incremental"


@dataclass(frozen=True)
class MailboxState:
    mailbox_id: int
    user: str
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: int
    size: int
    noselect: bool = False


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the backup directory
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    kind: str  # FULL or INCREMENTAL
    name: str  # the backup's directory name
    created: float  # unix time of the snapshot
    epoch: int  # the store's writer epoch in the snapshot
    next_body_id: int  # bodies with a lower id existed before this snapshot (ids are never reused)
    mailboxes: tuple[MailboxState, ...]
    files: tuple[FileEntry, ...]
    databases: dict[str, int]  # entries of every named database in the snapshot
    parent: str = ""  # directory name of the previous member of the chain ("" for a full backup)
    parent_manifest_sha256: str = ""
    stats: dict[str, float] = field(default_factory=dict)  # what this run wrote and how fast
    lineage: str = ""  # set by each restore in the store's meta: a chain never spans a restore
    format: int = FORMAT

    @property
    def messages(self) -> int:
        return sum(m.messages for m in self.mailboxes)

    @property
    def mail_bytes(self) -> int:
        return sum(m.size for m in self.mailboxes)

    @property
    def stored_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=1, sort_keys=True) + "\n").encode()


def manifest_from_json(raw: bytes, where: str) -> Manifest:
    try:
        data: dict[str, Any] = json.loads(raw)
        if data.get("format") != FORMAT:
            raise Damaged(f"{where}: unknown manifest format {data.get('format')!r}")
        return Manifest(
            kind=str(data["kind"]),
            name=str(data["name"]),
            created=float(data["created"]),
            epoch=int(data["epoch"]),
            next_body_id=int(data["next_body_id"]),
            mailboxes=tuple(MailboxState(**m) for m in data["mailboxes"]),
            files=tuple(FileEntry(**f) for f in data["files"]),
            databases={str(k): int(v) for k, v in data["databases"].items()},
            parent=str(data.get("parent", "")),
            parent_manifest_sha256=str(data.get("parent_manifest_sha256", "")),
            stats={str(k): float(v) for k, v in data.get("stats", {}).items()},
            lineage=str(data.get("lineage", "")),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise Damaged(f"{where}: unreadable manifest ({exc})") from None


def read_manifest(backup_dir: pathlib.Path) -> tuple[Manifest, str]:
    """The manifest of `backup_dir` and the sha256 of its bytes (what a child records)."""
    path = backup_dir / MANIFEST
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise Damaged(f"{path}: {exc.strerror or exc}") from None
    return manifest_from_json(raw, str(path)), hashlib.sha256(raw).hexdigest()
