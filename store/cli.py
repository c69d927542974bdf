"""`mailha store serve|compact|fulltext-rebuild`."""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
from typing import Any

from nodeconf.config import MIB
from nodeconf.service_process import start_service_process
from store.errors import StoreError


def register(sub: Any) -> None:
    store: argparse.ArgumentParser = sub.add_parser("store", help="the mailbox store process")
    store_sub = store.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    p: argparse.ArgumentParser = store_sub.add_parser("serve", help="serve the store API over gRPC")
    p.add_argument("--data", type=pathlib.Path, required=True, help="LMDB environment directory (created if missing)")
    p.add_argument("--listen", required=True, help="unix:/path/store.sock or 127.0.0.1:PORT (loopback only)")
    fence = p.add_mutually_exclusive_group()
    fence.add_argument("--fence", type=int, metavar="N", help="raise the writer epoch to N before serving")
    fence.add_argument("--fence-next", action="store_true", help="raise the writer epoch by one before serving")
    p.add_argument("--max-message-size", type=int, default=20 * MIB, help="bytes (default 20 MiB)")
    p.add_argument("--default-quota", type=int, default=0, help="bytes per new user; 0 = unlimited")
    p.add_argument("--read-only-start", action="store_true", help="start with writes suspended (SetWritable)")
    p.add_argument("--heartbeat", type=float, default=5.0, help="seconds between Watch heartbeats")
    p.add_argument(
        "--delivery-dedupe-window",
        type=float,
        default=6 * 86400.0,
        metavar="SECONDS",
        help="how long an LMTP retry of a stored delivery is answered without storing it again (default 6 days)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1024,
        help="gRPC worker threads and concurrent RPCs (each open Watch stream holds one; more are refused)",
    )
    p.add_argument(
        "--fulltext",
        action="store_true",
        help="index bodies for SEARCH TEXT/BODY (disk: about 3.2x the mail; without it those searches scan)",
    )
    p.add_argument("--reflection", action="store_true", help="enable gRPC server reflection (a debugging aid)")
    p.set_defaults(func=_serve)
    c: argparse.ArgumentParser = store_sub.add_parser(
        "compact", help="offline: rewrite the LMDB environment without its free pages (refused while a store runs)"
    )
    c.add_argument("--data", type=pathlib.Path, required=True, help="the store's data directory")
    c.add_argument("--keep-old", action="store_true", help="keep the previous environment as DATA/lmdb.old-TIME")
    c.set_defaults(func=_compact)
    r: argparse.ArgumentParser = store_sub.add_parser(
        "fulltext-rebuild", help="offline: drop the SEARCH TEXT index and index every message again"
    )
    r.add_argument("--data", type=pathlib.Path, required=True, help="the store's data directory")
    r.set_defaults(func=_fulltext_rebuild)


def _serve(args: argparse.Namespace) -> int:
    from store.listen import ListenAddressError
    from store.server import ServeOptions, serve

    start_service_process()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return serve(
            ServeOptions(
                data_dir=args.data,
                listen=args.listen,
                max_message_size=args.max_message_size,
                default_quota=args.default_quota,
                fence=args.fence,
                fence_next=args.fence_next,
                read_only_start=args.read_only_start,
                heartbeat_seconds=args.heartbeat,
                workers=args.workers,
                reflection=args.reflection,
                delivery_dedupe_window=args.delivery_dedupe_window,
                fulltext=args.fulltext,
            )
        )
    except ListenAddressError as exc:
        print(f"mailha store serve: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:  # e.g. --fence below the stored epoch
        print(f"mailha store serve: {exc.message}", file=sys.stderr)
        return 1


def _compact(args: argparse.Namespace) -> int:
    from store.compaction import compact

    try:
        result = compact(args.data, keep_old=args.keep_old)
    except StoreError as exc:
        print(f"mailha store compact: {exc.message}", file=sys.stderr)
        return 1
    print(
        f"compacted {args.data}: {result.before_bytes} -> {result.after_bytes} bytes in {result.seconds:.1f} s"
        + (f"; previous environment kept in {result.old_dir}" if result.old_dir else "")
    )
    return 0


def _fulltext_rebuild(args: argparse.Namespace) -> int:
    from store.fulltext import rebuild

    try:
        count = rebuild(args.data)
    except StoreError as exc:
        print(f"mailha store fulltext-rebuild: {exc.message}", file=sys.stderr)
        return 1
    print(f"indexed {count} messages of {args.data}")
    return 0
