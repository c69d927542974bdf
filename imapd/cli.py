"""`mailha imapd serve`, `mailha bench imap` and `mailha bench sort`."""

from __future__ import annotations

import argparse
import pathlib
from typing import Any

from imapd.session.context import DEFAULT_APPEND_LIMIT


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
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the ports (SO_REUSEPORT)")
    p.add_argument(
        "--store-data",
        type=pathlib.Path,
        help="the store's --data directory when it runs on this host: read SELECT/STATUS/LIST/FETCH from its LMDB",
    )
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--metrics-listen", metavar="HOST:PORT", help="serve Prometheus metrics here (one worker only)")
    p.set_defaults(func=_serve)


def register_bench(bench_sub: Any) -> None:
    _register_bench_sort(bench_sub)
    _register_bench_notify(bench_sub)
    p: argparse.ArgumentParser = bench_sub.add_parser("imap", help="IMAP sessions/s and per-command latency")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1143)
    p.add_argument("--tls", action="store_true", help="implicit TLS (the port is a TLS port)")
    p.add_argument("--starttls", action="store_true", help="STARTTLS before LOGIN")
    p.add_argument("--cafile", type=pathlib.Path, help="certificate to trust for TLS (default: no verification)")
    p.add_argument("--clients", type=int, default=50, help="concurrent session loops")
    p.add_argument("--seconds", type=float, default=10.0, help="duration (bounded)")
    p.add_argument("--users", type=int, default=20, help="number of bench users")
    p.add_argument("--idle", type=int, default=0, help="extra connections holding IDLE")
    p.add_argument("--store", help="store address: create the bench users through the store API")
    p.add_argument("--epoch", type=int, help="writer epoch for creating users (default: the store's)")
    p.add_argument("--user-prefix", default="bench", help="users are PREFIX0..PREFIX{N-1}")
    p.add_argument("--password", default="bench-password")
    p.add_argument("--think-ms", type=float, default=0.0, help="pause between a session's commands (default 0)")
    p.add_argument("--append-only", action="store_true", help="each client only APPENDs 4 KiB messages")
    p.add_argument(
        "--spawn",
        action="store_true",
        help="start a throwaway store + imapd on loopback (ignores --host/--port/--store)",
    )
    p.add_argument("--spawn-workers", type=int, default=1, help="imapd --workers for --spawn")
    p.add_argument("--procs", type=int, default=1, help="client processes the clients are split over")
    p.add_argument(
        "--sort-messages",
        type=int,
        default=10_000,
        metavar="N",
        help="with --spawn: then time SORT/THREAD cold and warm on an N-message mailbox "
        "(sort_10k_ms, thread_10k_ms, sort_10k_cold_ms, thread_10k_cold_ms keys; default 10000, 0: skip)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--output", type=pathlib.Path, default=pathlib.Path("bench-results/imap.json"))
    p.set_defaults(func=_bench)
    c: argparse.ArgumentParser = bench_sub.add_parser(
        "compare", help="mailha against a throwaway Dovecot: same workloads, same clients, one run"
    )
    c.add_argument("--users", type=int, default=100, help="users on both servers (seeded with 60 messages)")
    c.add_argument("--clients", type=int, default=50, help="back-to-back session loops (mixed workload)")
    c.add_argument("--seconds", type=float, default=20.0, help="length of each load run")
    c.add_argument("--rounds", type=int, default=2, help="rounds; the servers' order alternates")
    c.add_argument("--procs", type=int, default=2, help="client processes for the load runs")
    c.add_argument("--think-clients", type=int, default=300, help="concurrent sessions with think time")
    c.add_argument("--think-ms", type=float, default=1000.0, help="think time between commands")
    c.add_argument("--samples", type=int, default=50, help="single-session samples per command")
    c.add_argument("--mailha-workers", type=int, default=1, help="imapd --workers of the throwaway mailha")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.add_argument("--output", type=pathlib.Path, default=pathlib.Path("bench-results/compare.json"))
    c.set_defaults(func=_compare)


def _serve(args: argparse.Namespace) -> int:
    from imapd.service import ImapdOptions, run_imapd
    from mailha.service_process import start_service_process

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
    if args.store_data is not None:
        argv += ["--store-data", str(args.store_data)]
    return argv


def _compare(args: argparse.Namespace) -> int:
    from bench.compare import CompareOptions, run_compare

    return run_compare(
        CompareOptions(
            users=args.users,
            clients=args.clients,
            seconds=args.seconds,
            rounds=args.rounds,
            procs=args.procs,
            think_clients=args.think_clients,
            think_ms=args.think_ms,
            samples=args.samples,
            mailha_workers=args.mailha_workers,
            json_output=args.json,
            output=args.output,
        )
    )


def _bench(args: argparse.Namespace) -> int:
    from bench.imap_bench import ImapBenchOptions, run_imap_bench

    return run_imap_bench(
        ImapBenchOptions(
            host=args.host,
            port=args.port,
            tls=args.tls,
            starttls=args.starttls,
            cafile=args.cafile,
            clients=args.clients,
            seconds=args.seconds,
            users=args.users,
            idle=args.idle,
            store=args.store,
            epoch=args.epoch,
            user_prefix=args.user_prefix,
            password=args.password,
            json_output=args.json,
            append_only=args.append_only,
            think_ms=args.think_ms,
            output=args.output,
            spawn=args.spawn,
            spawn_workers=args.spawn_workers,
            procs=args.procs,
            sort_messages=args.sort_messages,
        )
    )


def _register_bench_sort(bench_sub: Any) -> None:
    s: argparse.ArgumentParser = bench_sub.add_parser(
        "sort", help="SORT/THREAD latency on a 10,000-message mailbox (spawns a throwaway store + imapd)"
    )
    s.add_argument("--messages", type=int, default=10_000)
    s.add_argument("--runs", type=int, default=5, help="timed runs per command (p50 reported)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--dovecot", action="store_true", help="then the same on a throwaway Dovecot (ratios in the output)")
    s.add_argument("--output", type=pathlib.Path, default=pathlib.Path("bench-results/sort.json"))
    s.set_defaults(func=_bench_sort)


def _register_bench_notify(bench_sub: Any) -> None:
    s: argparse.ArgumentParser = bench_sub.add_parser(
        "notify", help="NOTIFY delivery latency in IDLE (spawns a throwaway store + imapd)"
    )
    s.add_argument("--appends", type=int, default=20, help="changes timed (p50 reported)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--dovecot", action="store_true", help="then the same on a throwaway Dovecot (ratio in the output)")
    s.set_defaults(func=_bench_notify)


def _bench_notify(args: argparse.Namespace) -> int:
    from bench.notify_bench import main

    return main(args)


def _bench_sort(args: argparse.Namespace) -> int:
    from bench.sort_bench import main

    return main(args)
