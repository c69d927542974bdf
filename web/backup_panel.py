"""The console's view of the backups (issue 16): the last backup's age and result, and the
live Prometheus gauge of its age, for the repository the operator named (--backup-repo).

backup.status owns reading the repository; this module only shapes it for the
page and for /metrics. Reads run in a worker thread (they touch the disk).
"""

from __future__ import annotations

import pathlib
import time
from dataclasses import dataclass

import anyio.to_thread

from backup.errors import BackupError
from backup.status import BackupStatus, read_status


@dataclass(frozen=True)
class BackupView:
    configured: bool
    status: BackupStatus | None = None
    error: str = ""
    age_s: float | None = None


def human_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _mtime(path: pathlib.Path | None) -> tuple[int, int] | None:
    """(mtime, ctime): a new entry moves both, a chmod/chown (fixing access) the ctime."""
    try:
        if path is None:
            return None
        st = path.stat()
        return st.st_mtime_ns, st.st_ctime_ns
    except OSError:
        return None


class BackupPanel:
    def __init__(self, repo: pathlib.Path | None, metrics_file: pathlib.Path | None = None) -> None:
        self.repo = repo
        self.metrics_file = metrics_file
        # /metrics needs no login: the repository (a manifest lists every mailbox, megabytes for
        # a big store) is read again only when it changed. A backup, a verify or retention
        # renames an entry in the repository directory (its mtime moves); so does the textfile.
        self._cached: tuple[object, BackupStatus | None, str] | None = None  # (key, status, error)
        self._lock = anyio.Lock()

    async def _read(self, repo: pathlib.Path) -> tuple[BackupStatus | None, str]:
        async with self._lock:  # one reader at a time; the others take its result
            key = (_mtime(repo), _mtime(self.metrics_file))
            if self._cached is not None and self._cached[0] == key and key[0] is not None:
                return self._cached[1], self._cached[2]
            try:
                status, error = await anyio.to_thread.run_sync(lambda: read_status(repo, self.metrics_file)), ""
            except BackupError as exc:
                status, error = None, str(exc)
            self._cached = (key, status, error)
            return status, error

    async def view(self) -> BackupView:
        if self.repo is None:
            return BackupView(configured=False)
        status, error = await self._read(self.repo)
        if error:
            return BackupView(configured=True, error=error)
        if status is None:
            return BackupView(configured=True)  # readable, no backup yet
        return BackupView(configured=True, status=status, age_s=status.age(time.time()))

    async def prometheus(self) -> str:
        """Text exposition: the age of the newest finished backup, now (not when a file was written)."""
        view = await self.view()
        lines = [
            "# HELP mailha_backup_last_good_age_seconds seconds since the newest finished backup's snapshot",
            "# TYPE mailha_backup_last_good_age_seconds gauge",
        ]
        if view.status is not None and view.age_s is not None:
            lines.append(f"mailha_backup_last_good_age_seconds {view.age_s:.3f}")
            lines += [
                "# HELP mailha_backup_last_verify_ok 1 when the newest backup verified whole, 0 damaged",
                "# TYPE mailha_backup_last_verify_ok gauge",
            ]
            if view.status.verified is not None:
                lines.append(f"mailha_backup_last_verify_ok {1 if view.status.verified else 0}")
        lines += [
            "# HELP mailha_backup_status_readable 1 when the console can read the backup repository",
            "# TYPE mailha_backup_status_readable gauge",
            f"mailha_backup_status_readable {0 if view.error else 1}",
        ]
        return "\n".join(lines) + "\n"
