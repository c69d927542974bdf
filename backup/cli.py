"""`mailha backup create|follow|verify|restore|list` and `mailha export maildir|mbox`."""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any

from backup.errors import BackupError
from nodeconf.config import ConfigError


def _source_options(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", type=pathlib.Path, metavar="DIR", help="standalone data directory")
    where.add_argument("--store-dir", type=pathlib.Path, metavar="DIR", help="the DIR of `mailha store serve --data`")
    where.add_argument("--config", type=pathlib.Path, metavar="FILE", help="cluster.yaml: the shared storage path")


def register(sub: Any) -> None:
    b: argparse.ArgumentParser = sub.add_parser("backup", help="hot backups (full, incremental), verify, restore")
    bsub = b.add_subparsers(dest="backup_command", metavar="ACTION", required=True)

    c: argparse.ArgumentParser = bsub.add_parser("create", help="a backup into the repository DIR (store may run)")
    c.add_argument("repo", type=pathlib.Path, metavar="DIR", help="backup repository (created 0700 if missing)")
    _source_options(c)
    c.add_argument("--since", metavar="PREVIOUS", help="incremental after PREVIOUS (a backup directory, or 'latest')")
    c.add_argument("--keep", type=int, metavar="N", help="then keep only the newest N full backups and their chains")
    c.add_argument(
        "--max-rate", type=float, metavar="MIB", help="full backup: write at most MIB MiB/s (spare the disk)"
    )
    c.add_argument(
        "--metrics-file",
        type=pathlib.Path,
        metavar="FILE",
        help="write the Prometheus textfile there (0644) instead of DIR/mailha_backup.prom (0600)",
    )
    c.set_defaults(func=_create)

    f: argparse.ArgumentParser = bsub.add_parser("follow", help="keep an incremental chain current (polls the store)")
    f.add_argument("repo", type=pathlib.Path, metavar="DIR", help="backup repository (a full backup is made if none)")
    _source_options(f)
    f.add_argument("--interval", type=float, default=60.0, help="seconds between checks (default 60): the RPO bound")
    f.add_argument("--cycles", type=int, default=None, help="stop after N checks (default: run until stopped)")
    f.add_argument("--metrics-file", type=pathlib.Path, metavar="FILE", help="Prometheus textfile (see create)")
    f.set_defaults(func=_follow)

    v: argparse.ArgumentParser = bsub.add_parser("verify", help="check a backup (and its chain) read-only")
    v.add_argument("target", type=pathlib.Path, metavar="BACKUP", help="a backup directory, or a repository (newest)")
    v.add_argument(
        "--metrics-file", type=pathlib.Path, metavar="FILE", help="record the result in this Prometheus textfile"
    )
    v.set_defaults(func=_verify)

    r: argparse.ArgumentParser = bsub.add_parser(
        "restore", help="the whole store into an empty directory, or one user into the running store"
    )
    r.add_argument("target", type=pathlib.Path, metavar="BACKUP", help="a backup directory, or a repository (newest)")
    where = r.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", type=pathlib.Path, metavar="DIR", help="standalone data directory (new or empty)")
    where.add_argument("--store-dir", type=pathlib.Path, metavar="DIR", help="store data directory (new or empty)")
    where.add_argument("--store", metavar="ADDR", help="with --user: the running store (unix:PATH or 127.0.0.1:PORT)")
    r.add_argument("--user", help="restore only this user's mail into the running store (--store)")
    r.add_argument("--mailbox", help="with --user: only this mailbox")
    r.add_argument("--into", help="with --user: parent mailbox for the restored ones (default Restored/<date>)")
    r.add_argument("--epoch", type=int, default=None, help="writer epoch (default: the store's current epoch)")
    r.set_defaults(func=_restore)

    ls: argparse.ArgumentParser = bsub.add_parser("list", help="the backups of a repository")
    ls.add_argument("repo", type=pathlib.Path, metavar="DIR")
    ls.set_defaults(func=_list)

    e: argparse.ArgumentParser = sub.add_parser("export", help="a user's mail as Maildir or mbox (inverse of import)")
    e.add_argument("format", choices=("maildir", "mbox"))
    e.add_argument("dir", type=pathlib.Path, metavar="DIR", help="new or empty output directory")
    e.add_argument("--user", required=True)
    ewhere = e.add_mutually_exclusive_group()
    ewhere.add_argument("--store", help="store gRPC address (unix:PATH or 127.0.0.1:PORT)")
    ewhere.add_argument("--data", type=pathlib.Path, help="standalone data directory (else $MAILHA_STORE)")
    e.set_defaults(func=_export)


def _fail(what: str, exc: BaseException) -> int:
    print(f"mailha {what}: {exc}", file=sys.stderr)
    return 2


def _source(args: argparse.Namespace) -> Any:
    from backup.ops import Source

    if args.data is not None:
        return Source.standalone(args.data)
    if args.store_dir is not None:
        return Source.store_dir(args.store_dir)
    return Source.cluster(args.config)


def _create(args: argparse.Namespace) -> int:
    from backup.ops import create

    try:
        create(
            _source(args),
            args.repo,
            since=args.since,
            keep=args.keep,
            max_rate_mib=args.max_rate,
            metrics_file=args.metrics_file,
        )
    except (BackupError, ConfigError, OSError) as exc:
        return _fail("backup create", exc)
    return 0


def _follow(args: argparse.Namespace) -> int:
    from backup.ops import follow

    try:
        follow(_source(args), args.repo, interval=args.interval, cycles=args.cycles, metrics_file=args.metrics_file)
    except (BackupError, ConfigError, OSError) as exc:
        return _fail("backup follow", exc)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from backup.ops import run_verify

    try:
        return 0 if run_verify(args.target, metrics_file=args.metrics_file).ok else 1
    except (BackupError, OSError) as exc:
        return _fail("backup verify", exc)


def _restore(args: argparse.Namespace) -> int:
    from backup.ops import Source, restore_user, run_restore
    from store.admin import AdminError

    try:
        if args.user is not None or args.store is not None:
            if args.user is None or args.store is None:
                return _fail("backup restore", ValueError("--user and --store go together"))
            restore_user(args.target, args.store, args.user, mailbox=args.mailbox, into=args.into, epoch=args.epoch)
            return 0
        if args.mailbox or args.into:
            return _fail("backup restore", ValueError("--mailbox/--into need --user and --store"))
        source = Source.standalone(args.data) if args.data is not None else Source.store_dir(args.store_dir)
        run_restore(args.target, source.lmdb_dir)
    except (BackupError, AdminError, OSError) as exc:
        return _fail("backup restore", exc)
    return 0


def _list(args: argparse.Namespace) -> int:
    from backup.manifest import read_manifest
    from backup.repository import backup_dirs
    from importer.progress import human_bytes

    try:
        for path in backup_dirs(args.repo):
            manifest, _ = read_manifest(path)
            parent = f" after {manifest.parent}" if manifest.parent else ""
            print(
                f"{path.name}  {manifest.kind:<11} {manifest.messages:>9} messages  "
                f"{human_bytes(manifest.stored_bytes):>10}  epoch {manifest.epoch}{parent}"
            )
    except (BackupError, OSError) as exc:
        return _fail("backup list", exc)
    return 0


def _export(args: argparse.Namespace) -> int:
    import grpc

    from backup.export import export_user
    from importer.progress import ImportReport, Progress
    from store.admin import Admin, AdminError, resolve_store_address

    try:
        admin = Admin.connect(resolve_store_address(args.store, args.data))
    except AdminError as exc:
        return _fail("export", exc)
    progress = Progress(ImportReport(label="export"))
    try:
        export_user(admin.client, args.user, args.format, args.dir, progress)
    except (BackupError, OSError) as exc:
        return _fail("export", exc)
    except grpc.RpcError as exc:
        details = getattr(exc, "details", None)
        return _fail("export", RuntimeError(details() if callable(details) else str(exc)))
    finally:
        progress.finish()
        admin.close()
    return 0
