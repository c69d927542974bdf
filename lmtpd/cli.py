"""`mailha lmtpd serve`."""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
from typing import Any

from nodeconf.config import MIB
from nodeconf.service_process import start_service_process


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("lmtpd", help="LMTP delivery server")
    lsub = p.add_subparsers(dest="lmtpd_command", metavar="ACTION", required=True)
    s: argparse.ArgumentParser = lsub.add_parser("serve", help="serve LMTP, delivering into the store")
    s.add_argument("--store", required=True, help="store gRPC address (unix:PATH or HOST:PORT)")
    s.add_argument("--epoch", type=int, required=True, help="writer epoch passed on every write (never refreshed)")
    s.add_argument("--listen", default="127.0.0.1:2424", help="HOST:PORT (default 127.0.0.1:2424)")
    s.add_argument("--max-message-size", type=int, default=20 * MIB, help="bytes (default 20 MiB)")
    s.add_argument("--hostname", default=None, help="name in the greeting and LHLO reply (default: the host name)")
    s.add_argument("--quota-tempfail", action="store_true", help="over quota: 452 4.2.2 instead of 552 5.2.2")
    s.add_argument(
        "--resolve-cache-ttl", type=float, default=5.0, help="seconds to cache address lookups (0 = off; default 5)"
    )
    s.add_argument(
        "--max-connections", type=int, default=100, help="concurrent LMTP connections; more get 421 (default 100)"
    )
    s.add_argument("--metrics-listen", metavar="HOST:PORT", help="serve Prometheus metrics here (default: none)")
    s.add_argument(
        "--store-data",
        type=pathlib.Path,
        help="the store's --data directory when it runs on this host: appends go over its local write socket",
    )
    s.add_argument("--spool-dir", default=None, help="where messages over 1 MiB are spooled (default: $TMPDIR)")
    s.add_argument("--forward-relay", default=None, metavar="HOST:PORT", help="SMTP relay for users' forwarding")
    s.add_argument(
        "--spam-header", default="X-Spam-Flag: YES", help="the header that marks spam (default 'X-Spam-Flag: YES')"
    )
    s.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from lmtpd.personal_rules import SpamHeader
    from lmtpd.server import LmtpdOptions
    from lmtpd.service import parse_listen, run_lmtpd
    from lmtpd.settings_drop import PersonalOptions

    start_service_process()
    options = LmtpdOptions(
        max_message_size=args.max_message_size,
        quota_tempfail=args.quota_tempfail,
        spool_dir=args.spool_dir,
        max_connections=args.max_connections,
    )
    if args.hostname:
        options = dataclasses.replace(options, hostname=args.hostname)
    if args.metrics_listen:
        from nodeconf.frontend_metrics import FrontEndMetrics

        metrics: FrontEndMetrics | None = FrontEndMetrics("lmtpd")
        assert metrics is not None
        try:
            metrics.serve(*parse_listen(args.metrics_listen))
        except (ValueError, OSError) as exc:
            # Metrics are not worth an outage: serve mail without them.
            print(f"mailha lmtpd serve: no metrics on {args.metrics_listen}: {exc}", file=sys.stderr)
            metrics = None
        options = dataclasses.replace(options, metrics=metrics)
    personal = PersonalOptions(
        relay=parse_listen(args.forward_relay) if args.forward_relay else None,
        spam_header=SpamHeader.parse(args.spam_header),
        quota_tempfail=args.quota_tempfail,
    )
    return run_lmtpd(
        args.store,
        args.epoch,
        args.listen,
        options,
        resolve_ttl=args.resolve_cache_ttl,
        personal=personal,
        store_data=args.store_data,
    )
