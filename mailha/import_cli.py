"""`mailha import mbox|maildir|imap`: migrate mail into a user's mailboxes."""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from importer.errors import ImportFailure

if TYPE_CHECKING:
    from importer.source import ImportSource

_STATE_DIR = pathlib.Path.home() / ".local" / "state" / "mailha" / "import"


def _target_options(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--store", help="store gRPC address (unix:PATH or 127.0.0.1:PORT)")
    where.add_argument(
        "--data", type=pathlib.Path, help="standalone data directory (without --store/--data: $MAILHA_STORE)"
    )
    p.add_argument("--epoch", type=int, default=None, help="writer epoch (default: the store's current epoch)")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("import", help="import mail from mbox, Maildir or another IMAP server")
    isub = p.add_subparsers(dest="import_kind", metavar="SOURCE", required=True)

    m: argparse.ArgumentParser = isub.add_parser("mbox", help="one mbox file into one mailbox")
    m.add_argument("file", type=pathlib.Path)
    m.add_argument("--user", required=True, help="store user receiving the mail")
    m.add_argument("--mailbox", default="INBOX", help="destination mailbox (default INBOX)")
    _target_options(m)
    m.set_defaults(func=_mbox)

    d: argparse.ArgumentParser = isub.add_parser("maildir", help="a Maildir tree (Maildir++ folders) with flags")
    d.add_argument("dir", type=pathlib.Path)
    d.add_argument("--user", required=True, help="store user receiving the mail")
    d.add_argument("--date-from", choices=("mtime", "name"), default="mtime", help="internal date source")
    _target_options(d)
    d.set_defaults(func=_maildir)

    i: argparse.ArgumentParser = isub.add_parser("imap", help="every folder of an IMAP account (resumable)")
    i.add_argument("--host", required=True)
    i.add_argument("--port", type=int, default=None, help="default 993 with --tls, else 143")
    tls = i.add_mutually_exclusive_group()
    tls.add_argument("--tls", action="store_true", help="implicit TLS (default port 993)")
    tls.add_argument("--starttls", action="store_true", help="STARTTLS on the plain port before logging in")
    tls.add_argument(
        "--insecure-plaintext",
        action="store_true",
        help="log in without TLS: the password crosses the network in clear (refused unless given)",
    )
    i.add_argument("--ca-file", default=None, help="CA bundle to verify the server with (default: system)")
    i.add_argument("--user", required=True, help="login at the source server")
    i.add_argument("--password-file", type=pathlib.Path, required=True, help="file holding the source password")
    i.add_argument("--to-user", required=True, help="store user receiving the mail")
    i.add_argument("--state-dir", type=pathlib.Path, default=_STATE_DIR, help=f"resume markers (default {_STATE_DIR})")
    _target_options(i)
    i.set_defaults(func=_imap)


def _run(args: argparse.Namespace, user: str, make_source: Callable[[], ImportSource]) -> int:
    from importer.run import exit_status, fail, run_import
    from importer.store_sink import StoreSink
    from store.admin import Admin, AdminError, resolve_store_address

    try:
        # The admin CLI's way to find the store: --store, --data, or $MAILHA_STORE.
        admin = Admin.connect(resolve_store_address(args.store, args.data))
        try:
            client = admin.client
            # An import is an operator one-shot like the admin commands: the
            # store's current epoch, unless the operator pins one.
            epoch = args.epoch if args.epoch is not None else client.epoch()
            source = make_source()
            try:
                report = run_import(source, StoreSink(client, user, epoch))
            finally:
                close = getattr(source, "close", None)
                if close is not None:
                    close()
        finally:
            admin.close()
    except (ImportFailure, AdminError) as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(str(exc))
    return exit_status(report)


def _mbox(args: argparse.Namespace) -> int:
    from importer.mbox import MboxSource

    return _run(args, args.user, lambda: MboxSource(args.file, args.mailbox))


def _maildir(args: argparse.Namespace) -> int:
    from importer.maildir import DateFrom, MaildirSource

    return _run(args, args.user, lambda: MaildirSource(args.dir, DateFrom(args.date_from)))


def _imap(args: argparse.Namespace) -> int:
    from importer.imap_source import ImapSource, ImapSourceOptions
    from importer.resume_state import ResumeState, state_path
    from importer.run import fail

    if not (args.tls or args.starttls or args.insecure_plaintext):
        return fail(
            "refusing to send the source password in clear: give --tls or --starttls "
            "(or --insecure-plaintext if the network path is trusted)"
        )
    try:
        password = args.password_file.read_text("utf-8").rstrip("\r\n")
    except OSError as exc:
        return fail(f"--password-file: {exc}")
    port = args.port or (993 if args.tls else 143)
    options = ImapSourceOptions(
        args.host, port, args.user, password, tls=args.tls, starttls=args.starttls, ca_file=args.ca_file
    )
    state = ResumeState(state_path(args.state_dir, args.host, args.user, args.to_user))
    return _run(args, args.to_user, lambda: ImapSource(options, state))
