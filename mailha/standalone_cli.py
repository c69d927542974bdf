"""`mailha standalone`: one node, no ZooKeeper."""

from __future__ import annotations

import argparse
import pathlib
from typing import Any

from nodeconf.config import MIB
from nodeconf.service_process import start_service_process
from nodeconf.service_user import DEFAULT_SERVICE_USER


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "standalone", help="run a single node (store, IMAP, LMTP) without ZooKeeper"
    )
    p.add_argument("--data", type=pathlib.Path, required=True, help="data directory (created if missing)")
    p.add_argument("--max-message-size", type=int, default=20 * MIB, help="bytes (default 20 MiB)")
    p.add_argument("--default-quota", type=int, default=0, help="bytes per user; 0 = unlimited")
    p.add_argument("--lmtp-listen", default="127.0.0.1:2424", help="LMTP HOST:PORT (default 127.0.0.1:2424)")
    p.add_argument("--imap-listen", default="127.0.0.1:1143", help="IMAP plain+STARTTLS HOST:PORT")
    p.add_argument("--imaps-listen", default="127.0.0.1:1993", help="IMAP implicit TLS HOST:PORT")
    p.add_argument(
        "--allow-plaintext-login", action="store_true", help="development on loopback: IMAP LOGIN without TLS"
    )
    p.add_argument("--web-listen", default="127.0.0.1:8443", help="web app HTTPS HOST:PORT ('' = off)")
    p.add_argument("--web-sample-interval", type=float, default=5.0, help="seconds between the web's metric samples")
    p.add_argument("--imapd-metrics-listen", default="", help="imapd's Prometheus HOST:PORT ('' = none)")
    p.add_argument("--lmtpd-metrics-listen", default="", help="lmtpd's Prometheus HOST:PORT ('' = none)")
    p.add_argument(
        "--backup-repo", type=pathlib.Path, default=None, help="backup repository the web console reports on"
    )
    p.add_argument("--forward-relay", default="", metavar="HOST:PORT", help="SMTP relay for users' forwarding")
    p.add_argument(
        "--demo-user", action="store_true", help="create user 'demo' (password 'demo', admin role) if missing"
    )
    p.add_argument(
        "--service-user",
        default=DEFAULT_SERVICE_USER,
        help=f"when started as root, run store, imapd and lmtpd as this account (default {DEFAULT_SERVICE_USER})",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mailha.standalone import StandaloneOptions, run_standalone

    start_service_process()

    return run_standalone(
        StandaloneOptions(
            data_dir=args.data,
            max_message_size=args.max_message_size,
            default_quota=args.default_quota,
            demo_user=args.demo_user,
            lmtp_listen=args.lmtp_listen,
            imap_listen=args.imap_listen,
            imaps_listen=args.imaps_listen,
            allow_plaintext_login=args.allow_plaintext_login,
            web_listen=args.web_listen,
            web_sample_interval=args.web_sample_interval,
            backup_repo=args.backup_repo,
            imapd_metrics_listen=args.imapd_metrics_listen,
            lmtpd_metrics_listen=args.lmtpd_metrics_listen,
            forward_relay=args.forward_relay,
            service_user=args.service_user,
        )
    )
