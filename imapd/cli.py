"""`mailha imapd serve`."""

from __future__ import annotations

import argparse
import pathlib
from typing import Any

from imapd.session.context import DEFAULT_APPEND_LIMIT
from nodeconf.service_process import start_service_process


def register(sub: Any) -> None:
    imapd: argparse.ArgumentParser = sub.add_parser("imapd", help="the IMAP front end")
    imapd_sub = imapd.add_subparsers(dest="imapd_command", metavar="ACTION", required=True)
    p: argparse.ArgumentParser = imapd_sub.add_parser("serve", help="serve IMAP on a running store")
    p.add_argument("--store", required=True, help="store address (unix:/path or 127.0.0.1:PORT)")
    p.add_argument("--epoch", type=int, required=True, help="writer epoch passed on every write (never refreshed)")
    p.add_argument("--listen", action="append", default=[], metavar="HOST:PORT", help="plain + STARTTLS (repeatable)")
    p.add_argument("--tls-listen", action="append", default=[], metavar="HOST:PORT", help="implicit TLS (repeatable)")
    p.add_argument("--cert", type=pathlib.Path, help="PEM certificate chain")
    p.add_argument("--key", type=pathlib.Path, help="PEM private key")
    p.add_argument(
        "--allow-plaintext-login", action="store_true", help="development only: LOGIN/AUTHENTICATE without TLS"
    )
    p.add_argument("--append-limit", type=int, default=DEFAULT_APPEND_LIMIT, help="APPENDLIMIT in bytes")
    p.add_argument("--connections-per-user", type=int, default=50, help="per-user connection cap (per worker)")
    p.add_argument(
        "--max-prelogin-per-address",
        type=int,
        default=20,
        help="connections per source address not yet logged in (more wait, then get BYE; per worker)",
    )
    p.add_argument(
        "--envelope-cache-mb", type=float, default=8.0, help="MiB of rendered ENVELOPEs kept across sessions"
    )
    p.add_argument(
        "--sort-cache-mb", type=float, default=128.0, help="MiB of SORT/THREAD keys kept across sessions (about)"
    )
    p.add_argument(
        "--mailbox-linger",
        type=float,
        default=15.0,
        help="seconds a mailbox's change feed and cached ENVELOPEs/SORT keys outlive its last session",
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the ports (SO_REUSEPORT)")
    p.add_argument(
        "--store-data",
        type=pathlib.Path,
        help="the store's --data directory when it runs on this host: read SELECT/STATUS/LIST/FETCH from its LMDB",
    )
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--metrics-listen", metavar="HOST:PORT", help="serve Prometheus metrics here (one worker only)")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from imapd.service import ImapdOptions, run_imapd

    start_service_process()
    return run_imapd(
        ImapdOptions(
            store=args.store,
            epoch=args.epoch,
            listen=tuple(args.listen),
            tls_listen=tuple(args.tls_listen),
            cert=args.cert,
            key=args.key,
            allow_plaintext_login=args.allow_plaintext_login,
            append_limit=args.append_limit,
            connections_per_user=args.connections_per_user,
            max_prelogin_per_address=args.max_prelogin_per_address,
            envelope_cache_mb=args.envelope_cache_mb,
            sort_cache_mb=args.sort_cache_mb,
            mailbox_linger=args.mailbox_linger,
            workers=args.workers,
            reuse_port=args.reuse_port or args.workers > 1,
            store_data=args.store_data,
            metrics_listen=args.metrics_listen,
        ),
        argv=_worker_argv(args),
    )


def _worker_argv(args: argparse.Namespace) -> list[str]:
    """The same `imapd serve` command line, for worker processes."""
    argv = ["imapd", "serve", "--store", args.store, "--epoch", str(args.epoch)]
    for addr in args.listen:
        argv += ["--listen", addr]
    for addr in args.tls_listen:
        argv += ["--tls-listen", addr]
    if args.cert is not None and args.key is not None:
        argv += ["--cert", str(args.cert), "--key", str(args.key)]
    if args.allow_plaintext_login:
        argv.append("--allow-plaintext-login")
    argv += ["--append-limit", str(args.append_limit), "--connections-per-user", str(args.connections_per_user)]
    argv += ["--max-prelogin-per-address", str(args.max_prelogin_per_address)]
    argv += ["--envelope-cache-mb", str(args.envelope_cache_mb), "--sort-cache-mb", str(args.sort_cache_mb)]
    argv += ["--mailbox-linger", str(args.mailbox_linger)]
    if args.store_data is not None:
        argv += ["--store-data", str(args.store_data)]
    return argv
