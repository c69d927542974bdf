"""`mailha web serve`: the operators' console and the users' page."""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any

from nodeconf.config import load
from nodeconf.paths import store_socket_path


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("web", help="HTTPS operators' console and users' page")
    wsub = p.add_subparsers(dest="web_command", metavar="ACTION", required=True)
    s: argparse.ArgumentParser = wsub.add_parser("serve", help="serve the web app over HTTPS")
    where = s.add_mutually_exclusive_group()
    where.add_argument("--store", help="store gRPC address (unix:PATH or HOST:PORT)")
    where.add_argument("--data", type=pathlib.Path, help="standalone data directory")
    s.add_argument("--listen", default="127.0.0.1:8443", help="HOST:PORT (default 127.0.0.1:8443)")
    s.add_argument("--cert", type=pathlib.Path, default=None, help="TLS certificate (default: the dev certificate)")
    s.add_argument("--key", type=pathlib.Path, default=None, help="TLS key")
    s.add_argument("--config", type=pathlib.Path, default=None, help="cluster.yaml: show the HA cluster's status")
    s.add_argument("--sample-interval", type=float, default=5.0, help="seconds between metric samples (default 5)")
    s.add_argument(
        "--scrape",
        action="append",
        default=[],
        metavar="SERVICE=HOST:PORT",
        help="graph this front end's Prometheus metrics (imapd, lmtpd); with --config the nodes' own are used",
    )
    s.add_argument("--backup-repo", type=pathlib.Path, default=None, help="backup repository the console reports on")
    s.add_argument(
        "--backup-metrics-file",
        type=pathlib.Path,
        default=None,
        help="the backups' Prometheus textfile if not in the repository (backup create --metrics-file)",
    )
    s.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from nodeconf.selfsigned import ensure_dev_certificate
    from store.admin import AdminError, resolve_store_address
    from web.server import WebOptions, run_web

    cluster = None
    if args.config is not None:
        cluster = load(args.config)
    if cluster is not None and not (args.store or args.data):
        # The status follows the active node's store from the first status read on.
        store = f"unix:{store_socket_path(cluster, cluster.nodes[0].name)}"
    else:
        try:
            store = resolve_store_address(args.store, args.data)
        except AdminError as exc:
            print(f"mailha web serve: {exc}", file=sys.stderr)
            return 2
    scrape: list[tuple[str, str]] = []
    for item in args.scrape:
        service, sep, address = item.partition("=")
        if not sep or service not in ("imapd", "lmtpd") or ":" not in address:
            print(f"mailha web serve: --scrape {item!r}: expected imapd=HOST:PORT or lmtpd=HOST:PORT", file=sys.stderr)
            return 2
        scrape.append((service, address))
    cert, key = args.cert, args.key
    if cert is None or key is None:
        tls_dir = (args.data / "tls") if args.data else pathlib.Path("/var/lib/mailha-web/tls")
        cert, key = ensure_dev_certificate(tls_dir)
    return run_web(
        WebOptions(
            store=store,
            listen=args.listen,
            cert=cert,
            key=key,
            cluster=cluster,
            sample_interval=args.sample_interval,
            backup_repo=args.backup_repo or (cluster.web.backup_repo if cluster is not None else None),
            backup_metrics_file=args.backup_metrics_file
            or (cluster.web.backup_metrics_file if cluster is not None else None),
            scrape=tuple(scrape),
        )
    )
