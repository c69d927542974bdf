"""The last backup of a repository and how it went, for the operators' console and the live gauge.

Read-only: the newest finished backup's manifest (time, kind, size,
messages) and the repository's metrics textfile (the result of the last
`backup create` run and of the last `backup verify`). The reader needs to
read the repository: run the backups as the account the console runs as, or
point the console at a copy it may read.
"""

from __future__ import annotations

import pathlib
import time
from dataclasses import dataclass

from backup import repository
from backup.errors import BackupError
from backup.manifest import read_manifest


@dataclass(frozen=True)
class BackupStatus:
    repo: str
    name: str  # the newest backup's directory name ("" when there is none)
    kind: str  # full / incremental
    created: float  # its snapshot time (unix s)
    stored_bytes: int
    messages: int
    last_run_ok: bool | None  # the last `backup create` run (None: no record)
    last_run_time: float | None
    verified: bool | None  # the last verify of THIS backup (None: not verified since it was made)
    verify_time: float | None

    def age(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.created)


def read_status(repo: pathlib.Path, metrics_file: pathlib.Path | None = None) -> BackupStatus | None:
    """None when the repository holds no finished backup; BackupError when it cannot be read."""
    try:
        if not repo.is_dir():
            raise BackupError(f"{repo}: no such backup repository")
        dirs = repository.backup_dirs(repo)
    except PermissionError as exc:
        raise BackupError(f"{repo}: cannot read the repository ({exc.strerror})") from None
    if not dirs:
        return None
    manifest, _sha = read_manifest(dirs[-1])
    values = repository.read_metrics(repo, metrics_file)
    run_ok = values.get("mailha_backup_last_run_success")
    verified_at = values.get("mailha_backup_last_verify_backup_timestamp_seconds")
    verify_ok = values.get("mailha_backup_last_verify_success")
    this_one = verified_at is not None and abs(verified_at - manifest.created) < 1e-3
    return BackupStatus(
        repo=str(repo),
        name=manifest.name,
        kind=manifest.kind,
        created=manifest.created,
        stored_bytes=manifest.stored_bytes,
        messages=manifest.messages,
        last_run_ok=None if run_ok is None else run_ok == 1.0,
        last_run_time=values.get("mailha_backup_last_run_timestamp_seconds"),
        verified=(verify_ok == 1.0) if this_one and verify_ok is not None else None,
        verify_time=values.get("mailha_backup_last_verify_timestamp_seconds") if this_one else None,
    )
