"""A backup repository: one directory holding full backups and their incremental chains.

    REPO/20261206T041502.123456Z-full/         manifest.json, lmdb/data.mdb
    REPO/20261206T051500.654321Z-incremental/  manifest.json, delta.bin
    REPO/mailha_backup.prom                    node_exporter textfile-collector metrics
    REPO/.lock                                 one writer at a time (flock)

Directory names sort by time. A `.tmp-*` directory is a backup that never
finished; nothing reads it and the next run removes it.
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from backup import files
from backup.errors import BackupError, Damaged
from backup.manifest import FULL, MANIFEST, Manifest, read_manifest

METRIC_FILE = "mailha_backup.prom"


@dataclass(frozen=True)
class Member:
    path: pathlib.Path
    manifest: Manifest
    manifest_sha256: str


def new_name(kind: str, now: float | None = None) -> str:
    moment = time.time() if now is None else now
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(moment))
    return f"{stamp}.{int(moment % 1 * 1_000_000):06d}Z-{kind}"


def backup_dirs(repo: pathlib.Path) -> list[pathlib.Path]:
    """Finished backups of `repo`, oldest first."""
    if not repo.is_dir():
        return []
    return sorted(p for p in repo.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file())


def latest(repo: pathlib.Path) -> pathlib.Path:
    found = backup_dirs(repo)
    if not found:
        raise BackupError(f"{repo}: no backup here yet (make a full one first)")
    return found[-1]


def chain(backup_dir: pathlib.Path) -> list[Member]:
    """The members from the full backup to `backup_dir`, each checked against its child's record."""
    members: list[Member] = []
    at = backup_dir
    expected_sha = ""
    while True:
        manifest, sha = read_manifest(at)
        if expected_sha and sha != expected_sha:
            raise Damaged(f"{at / MANIFEST}: differs from what {members[0].path.name} recorded of it")
        members.insert(0, Member(at, manifest, sha))
        if manifest.kind == FULL:
            return members
        if not manifest.parent:
            raise Damaged(f"{at / MANIFEST}: an incremental backup without a parent")
        expected_sha = manifest.parent_manifest_sha256
        at = at.parent / manifest.parent
        if not at.is_dir():
            raise Damaged(f"{at}: the chain of {backup_dir.name} needs this backup, and it is missing")


def resolve(repo_or_backup: pathlib.Path) -> pathlib.Path:
    """A backup directory, or the newest backup of a repository."""
    if (repo_or_backup / MANIFEST).is_file():
        return repo_or_backup
    return latest(repo_or_backup)


@contextmanager
def locked(repo: pathlib.Path) -> Iterator[None]:
    files.private_dir(repo)
    fd = os.open(repo / ".lock", os.O_RDWR | os.O_CREAT, files.FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"{repo}: another backup is running here") from None
        for stale in repo.glob(f"{files.TMP_PREFIX}*"):
            files.remove_tree(stale)
        yield
    finally:
        os.close(fd)


def apply_retention(repo: pathlib.Path, keep: int) -> list[pathlib.Path]:
    """Keep the newest `keep` full backups and the incrementals built on them; return what went."""
    if keep < 1:
        raise BackupError("--keep must be at least 1")
    dirs = backup_dirs(repo)
    fulls = [d for d in dirs if read_manifest(d)[0].kind == FULL]
    if len(fulls) <= keep:
        return []
    oldest_kept = fulls[-keep]
    removed = [d for d in dirs if d.name < oldest_kept.name]
    for d in removed:
        files.remove_tree(d)
    return removed


def write_metrics(
    repo: pathlib.Path, *, ok: bool, kind: str, manifest: Manifest | None, path: pathlib.Path | None = None
) -> None:
    """The textfile-collector file: time and size of the last good backup, result of the last run.

    In the repository by default (0600, like the backups); `path` puts it where
    node_exporter reads it instead (0644: it holds times and sizes, nothing secret).

    Alert on `time() - mailha_backup_last_success_timestamp_seconds`; the age
    gauge is the age when the file was written (for a quick look).
    """
    target = path if path is not None else repo / METRIC_FILE
    previous = _read_metrics(target)
    now = time.time()
    if ok and manifest is not None:
        previous["mailha_backup_last_success_timestamp_seconds"] = manifest.created
        previous["mailha_backup_last_success_stored_bytes"] = float(manifest.stored_bytes)
        previous["mailha_backup_last_success_messages"] = float(manifest.messages)
        previous[f'mailha_backup_last_success_timestamp_seconds{{kind="{kind}"}}'] = manifest.created
    previous["mailha_backup_last_run_timestamp_seconds"] = now
    previous["mailha_backup_last_run_success"] = 1.0 if ok else 0.0
    _write_metrics(target, previous, now, files.FILE_MODE if path is None else 0o644)


def write_verify_metrics(
    repo: pathlib.Path, *, ok: bool, verified: Manifest | None, path: pathlib.Path | None = None
) -> None:
    """Add the last verify's result to the same textfile: when it ran, whether the backup
    was whole, and which backup it checked (by its snapshot time)."""
    target = path if path is not None else repo / METRIC_FILE
    previous = _read_metrics(target)
    now = time.time()
    previous["mailha_backup_last_verify_timestamp_seconds"] = now
    previous["mailha_backup_last_verify_success"] = 1.0 if ok else 0.0
    if verified is not None:
        previous["mailha_backup_last_verify_backup_timestamp_seconds"] = verified.created
    _write_metrics(target, previous, now, files.FILE_MODE if path is None else 0o644)


def read_metrics(repo: pathlib.Path, path: pathlib.Path | None = None) -> dict[str, float]:
    """The textfile's values by series name ({} when there is none yet)."""
    return _read_metrics(path if path is not None else repo / METRIC_FILE)


def _write_metrics(target: pathlib.Path, values: dict[str, float], now: float, mode: int) -> None:
    last_good = values.get("mailha_backup_last_success_timestamp_seconds")
    if last_good is not None:
        values["mailha_backup_last_success_age_seconds"] = max(0.0, now - last_good)
    lines: list[str] = []
    for base in sorted({k.split("{")[0] for k in values}):
        lines.append(f"# TYPE {base} gauge")
        lines += [f"{k} {values[k]:.3f}" for k in sorted(values) if k.split("{")[0] == base]
    data = ("\n".join(lines) + "\n").encode()
    files.replace_atomically(target, data, mode)


def _read_metrics(path: pathlib.Path) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            continue
    return out
