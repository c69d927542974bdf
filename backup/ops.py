"""What each `mailha backup ...` and `mailha export ...` command does, with progress and a summary.

The CLI parses arguments and calls one function here; these return an exit
status and write the summary (the progress bar goes to stderr).
"""

from __future__ import annotations

import pathlib
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from backup import repository
from backup.create import Created, create_full, create_incremental
from backup.errors import BackupError
from backup.follow import Follower, FollowStep
from backup.manifest import read_manifest
from backup.repository import chain
from backup.restore import restore_chain
from backup.user_source import BackupUserSource
from backup.verify import VerifyReport, verify
from importer.progress import ImportReport, Progress, human_bytes
from importer.run import run_import
from importer.store_sink import StoreSink
from nodeconf.config import load
from nodeconf.paths import StandalonePaths, shared_store_dir
from store.admin import Admin

MIB = 1024 * 1024


@dataclass(frozen=True)
class Source:
    """Where the store's LMDB environment is."""

    lmdb_dir: pathlib.Path

    @classmethod
    def standalone(cls, data: pathlib.Path) -> Source:
        return cls(StandalonePaths(data).store_dir / "lmdb")

    @classmethod
    def store_dir(cls, store_dir: pathlib.Path) -> Source:
        return cls(store_dir / "lmdb")

    @classmethod
    def cluster(cls, config: pathlib.Path) -> Source:
        return cls(shared_store_dir(load(config).storage) / "lmdb")


def _progress(label: str, total_bytes: int | None, out: TextIO | None) -> tuple[ImportReport, Progress]:
    report = ImportReport(label=label)
    return report, Progress(report, out, total_bytes=total_bytes)


def create(
    source: Source,
    repo: pathlib.Path,
    *,
    since: str | None,
    keep: int | None,
    max_rate_mib: float | None = None,
    metrics_file: pathlib.Path | None = None,
    out: TextIO | None = None,
) -> Created:
    """A full backup, or with `since` ("latest" or a backup directory) an incremental; then retention."""
    with repository.locked(repo):
        estimate = (source.lmdb_dir / "data.mdb").stat().st_size if since is None else None
        report, progress = _progress("backup", estimate, out)
        tick = _make_tick(report, progress)
        ok = False
        created: Created | None = None
        try:
            if since is None:
                created = create_full(
                    source.lmdb_dir, repo, tick=tick, max_rate=max_rate_mib * MIB if max_rate_mib else None
                )
            else:
                previous = repository.latest(repo) if since == "latest" else pathlib.Path(since)
                members = chain(previous)
                created = create_incremental(source.lmdb_dir, repo, members[-1], tick=tick)
            ok = True
        finally:
            report.messages = created.manifest.messages if created else 0
            report.folders = len(created.manifest.mailboxes) if created else 0
            repository.write_metrics(
                repo,
                ok=ok,
                kind=created.manifest.kind if created else "",
                manifest=created.manifest if created else None,
                path=metrics_file,
            )
            progress.finish()
        removed = repository.apply_retention(repo, keep) if keep is not None else []
    stored = created.manifest.stored_bytes
    rate = stored / created.seconds if created.seconds > 0 else 0.0
    _say(
        out,
        f"{created.manifest.kind} backup {created.path} in {created.seconds:.2f} s: "
        f"{created.manifest.messages} messages in {len(created.manifest.mailboxes)} mailboxes, "
        f"{human_bytes(stored)} written ({human_bytes(rate)}/s)",
    )
    for gone in removed:
        _say(out, f"retention: removed {gone}")
    return created


def _make_tick(report: ImportReport, progress: Progress) -> Callable[[int], None]:
    def tick(n: int) -> None:
        report.bytes += n
        progress.update()

    return tick


def _say(out: TextIO | None, text: str) -> None:
    stream = out if out is not None else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def run_verify(
    target: pathlib.Path, out: TextIO | None = None, *, metrics_file: pathlib.Path | None = None
) -> VerifyReport:
    """Verify, then add the result to the repository's metrics textfile (or `metrics_file`),
    where the console and Prometheus read it."""
    backup_dir = repository.resolve(target)
    started = time.monotonic()
    report, progress = _progress("verify", None, out)
    result = verify(backup_dir, tick=_make_tick(report, progress))
    report.messages = result.messages
    progress.finish()
    try:
        verified = read_manifest(backup_dir)[0]
    except BackupError:
        verified = None
    try:
        repository.write_verify_metrics(backup_dir.parent, ok=result.ok, verified=verified, path=metrics_file)
    except OSError as exc:  # a read-only copy of a repository can still be verified
        _say(out, f"verify result not recorded: {exc}")
    seconds = time.monotonic() - started
    verdict = "OK" if result.ok else f"DAMAGED ({len(result.problems)} problems)"
    _say(
        out,
        f"verify {backup_dir}: {verdict}; chain of {result.members}, {result.messages} messages, "
        f"{human_bytes(result.body_bytes)} of bodies read in {seconds:.1f} s",
    )
    for problem in result.problems:
        _say(out, f"  {problem}")
    return result


def run_restore(target: pathlib.Path, lmdb_dir: pathlib.Path, out: TextIO | None = None) -> None:
    """The whole store, as of `target` (a backup or a repository's newest), into an empty data directory."""
    backup_dir = repository.resolve(target)
    members = chain(backup_dir)
    total = sum(f.size for m in members for f in m.manifest.files)
    report, progress = _progress("restore", total, out)
    started = time.monotonic()
    try:
        restore_chain(members, lmdb_dir, tick=_make_tick(report, progress))
        report.messages = members[-1].manifest.messages
        report.folders = len(members[-1].manifest.mailboxes)
    finally:
        progress.finish()
    seconds = time.monotonic() - started
    _say(
        out,
        f"restored {backup_dir.name} (chain of {len(members)}) into {lmdb_dir} in {seconds:.2f} s "
        f"({human_bytes(total / seconds if seconds > 0 else 0)}/s); start the store on it",
    )


def restore_user(
    target: pathlib.Path,
    client_address: str,
    user: str,
    *,
    mailbox: str | None,
    into: str | None,
    epoch: int | None,
    out: TextIO | None = None,
) -> ImportReport:
    """One user's mailboxes (or one mailbox) from a backup into the running store, under `into`."""
    backup_dir = repository.resolve(target)
    members = chain(backup_dir)
    default_into = "Restored/" + time.strftime("%Y-%m-%d", time.gmtime(members[-1].manifest.created))
    with tempfile.TemporaryDirectory(prefix="mailha-restore-") as tmp:
        if len(members) == 1:
            env_dir = members[0].path / "lmdb"
        else:
            env_dir = pathlib.Path(tmp) / "lmdb"
            restore_chain(members, env_dir)
        source = BackupUserSource(env_dir, user, into or default_into, mailbox)
        admin = Admin.connect(client_address)
        try:
            client = admin.client
            sink = StoreSink(client, user, epoch if epoch is not None else client.epoch())
            report = run_import(source, sink, out=out if out is not None else sys.stderr)
        finally:
            admin.close()
            source.close()
    if report.errors:
        raise BackupError(f"{len(report.errors)} messages were not restored (listed above)")
    return report


def follow(
    source: Source,
    repo: pathlib.Path,
    *,
    interval: float,
    cycles: int | None,
    metrics_file: pathlib.Path | None = None,
    out: TextIO | None = None,
) -> None:
    """Keep the repository's chain current: an incremental whenever the store changed, every `interval` s."""

    def report(step: FollowStep) -> None:
        if step.created is None:
            _say(out, f"follow: no change; newest backup is {step.lag_seconds:.1f} s old")
            return
        manifest = step.created.manifest
        repository.write_metrics(repo, ok=True, kind=manifest.kind, manifest=manifest, path=metrics_file)
        _say(
            out,
            f"follow: {manifest.kind} {step.created.path.name} in {step.created.seconds:.2f} s, "
            f"{human_bytes(manifest.stored_bytes)}; lag before it {step.lag_seconds:.1f} s",
        )

    Follower(source.lmdb_dir, repo).run(interval, cycles, report)
