"""`mailha bench WHAT`: every benchmark registers here, beside its code.

Services do not import bench/ (it drives them from outside, as a client
would); each handler imports its benchmark only when that one runs, so
building the `mailha` parser stays cheap for every service process.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any

from haagent.agent_cli import DEFAULT_CONFIG, guard_ha_errors
from nodeconf.config import load


def register(sub: Any) -> None:
    bench: argparse.ArgumentParser = sub.add_parser(
        "bench", help="benchmarks (print a table; --json for one JSON object)"
    )
    bench_sub = bench.add_subparsers(dest="bench", metavar="WHAT", required=True)
    _register_store(bench_sub)
    _register_sort(bench_sub)
    _register_notify(bench_sub)
    _register_behind(bench_sub)
    _register_imap(bench_sub)
    _register_lmtp(bench_sub)
    _register_backup(bench_sub)
    _register_failover(bench_sub)


_GRPC_READS_HELP = (
    "mailha's imapd reads everything over gRPC, as the HA cluster's front ends do "
    "(default: it reads the store's LMDB beside it, as standalone mode runs it)"
)


def _register_store(bench_sub: Any) -> None:
    p: argparse.ArgumentParser = bench_sub.add_parser("store", help="append/fetch/flag throughput and latency")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--seconds", type=float, default=3.0, help="duration of each timed phase")
    p.add_argument("--store", help="benchmark a running store at ADDR instead of starting one")
    p.set_defaults(func=_store)
    m: argparse.ArgumentParser = bench_sub.add_parser(
        "mailbox", help="one large INBOX filled over LMTP: imaplib timings, delivery rate, disk, RSS"
    )
    m.add_argument("--size", type=int, default=50_000, help="messages delivered into the INBOX (default 50,000)")
    m.add_argument("--runs", type=int, default=5, help="fresh connections per operation (the median is reported)")
    m.add_argument("--only", default="", help="comma-separated operations to time (default: all)")
    m.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    m.add_argument("--out", default="bench-results/mailbox.json", help="where the JSON result is written")
    m.add_argument("--no-fulltext", action="store_true", help="the store without its full-text index")
    m.add_argument(
        "--connections", type=int, default=1, help="LMTP connections filling the INBOX (default 1; more for 1M)"
    )
    m.add_argument(
        "--fill",
        choices=("lmtp", "import"),
        default="lmtp",
        help="how the INBOX is filled: lmtp (default; one message per transaction, as Postfix delivers) "
        "or import (the corpus written as an mbox, then `mailha import mbox`: the quick way to 1,000,000)",
    )
    m.add_argument("--grpc-reads", action="store_true", help=_GRPC_READS_HELP)
    m.add_argument(
        "--data-dir",
        type=pathlib.Path,
        help="keep the servers' directory here: an empty one is filled (and the fill recorded), "
        "one filled before with the same --size is reused without filling",
    )
    m.set_defaults(func=_bench_mailbox)


def _store(args: argparse.Namespace) -> int:
    from bench.store_bench import BenchOptions, run_bench

    return run_bench(BenchOptions(json_output=args.json, seconds=args.seconds, store=args.store))


def _bench_mailbox(args: argparse.Namespace) -> int:
    from bench.large_mailbox import MailboxBenchOptions, run_bench
    from bench.mailbox_measure import OPERATIONS

    only = frozenset(o for o in args.only.split(",") if o) or None
    unknown = sorted((only or frozenset()) - set(OPERATIONS))
    if unknown or not 1 <= args.size <= 2_000_000 or not 1 <= args.connections <= 64:
        print(
            f"mailha bench mailbox: unknown operation(s) {unknown}, --size not in 1..2,000,000 "
            "or --connections not in 1..64",
            file=sys.stderr,
        )
        print(f"operations: {', '.join(OPERATIONS)}", file=sys.stderr)
        return 2
    options = MailboxBenchOptions(
        size=args.size,
        runs=args.runs,
        json=args.json,
        out=args.out,
        only=only,
        fulltext=not args.no_fulltext,
        connections=args.connections,
        local_reads=not args.grpc_reads,
        fill=args.fill,
        data_dir=args.data_dir,
    )
    return run_bench(options)


def _register_sort(bench_sub: Any) -> None:
    s: argparse.ArgumentParser = bench_sub.add_parser(
        "sort", help="SORT/THREAD latency on a 10,000-message mailbox (spawns a throwaway store + imapd)"
    )
    s.add_argument("--messages", type=int, default=10_000)
    s.add_argument("--runs", type=int, default=5, help="timed runs per command (p50 reported)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--dovecot", action="store_true", help="then the same on a throwaway Dovecot (ratios in the output)")
    s.add_argument("--output", type=pathlib.Path, default=pathlib.Path("bench-results/sort.json"))
    s.set_defaults(func=_sort)


def _sort(args: argparse.Namespace) -> int:
    from bench.sort_bench import main

    return main(args)


def _register_notify(bench_sub: Any) -> None:
    s: argparse.ArgumentParser = bench_sub.add_parser(
        "notify", help="NOTIFY delivery latency in IDLE (spawns a throwaway store + imapd)"
    )
    s.add_argument("--appends", type=int, default=20, help="changes timed (p50 reported)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--dovecot", action="store_true", help="then the same on a throwaway Dovecot (ratio in the output)")
    s.set_defaults(func=_notify)


def _notify(args: argparse.Namespace) -> int:
    from bench.notify_bench import main

    return main(args)


def _register_behind(bench_sub: Any) -> None:
    s: argparse.ArgumentParser = bench_sub.add_parser(
        "behind",
        help="a selected session silent while N messages arrive over LMTP, then NOOP: kept, resynchronised, timed",
    )
    s.add_argument("--size", type=int, default=5000, help="messages per run (default 5000: past imapd's buffer)")
    s.add_argument("--runs", type=int, default=3, help="runs (the median NOOP is reported)")
    s.add_argument("--dovecot", action="store_true", help="the same runs on a throwaway Dovecot (ratio in the output)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=_behind)


def _behind(args: argparse.Namespace) -> int:
    from bench.behind_bench import main

    return main(args)


def _register_imap(bench_sub: Any) -> None:
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
    p.set_defaults(func=_imap)
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
    c.add_argument(
        "--only",
        choices=("all", "single"),
        default="all",
        help="single: only the single-session p50/p99 workload (no mixed or think-time load runs)",
    )
    c.add_argument(
        "--mailbox-size",
        type=int,
        nargs="?",
        const=50_000,
        metavar="N",
        help="instead: one INBOX of N messages (default 50,000) filled over LMTP in both, issue 17's table",
    )
    c.add_argument("--mailbox-rounds", type=int, default=3, help="with --mailbox-size: measurement rounds")
    c.add_argument("--mailbox-runs", type=int, default=5, help="with --mailbox-size: connections per operation")
    c.add_argument("--no-fulltext", action="store_true", help="with --mailbox-size: mailha's store without FTS")
    c.add_argument("--grpc-reads", action="store_true", help="with --mailbox-size: " + _GRPC_READS_HELP)
    c.add_argument(
        "--dovecot-fill",
        choices=("hybrid", "lmtp"),
        default="hybrid",
        help="with --mailbox-size: how Dovecot's INBOX is filled: hybrid (default; the first and last 1,000 "
        "over LMTP, the middle by `doveadm import`) or lmtp (every message over LMTP: ~850 s more at 50k)",
    )
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.add_argument("--output", type=pathlib.Path, help="JSON result (default bench-results/compare[-mailbox].json)")
    c.set_defaults(func=_compare)


def _compare(args: argparse.Namespace) -> int:
    if args.mailbox_size is not None:
        from bench.mailbox_compare import MailboxCompareOptions, run_mailbox_compare

        return run_mailbox_compare(
            MailboxCompareOptions(
                size=args.mailbox_size,
                runs=args.mailbox_runs,
                rounds=args.mailbox_rounds,
                fulltext=not args.no_fulltext,
                local_reads=not args.grpc_reads,
                dovecot_fill=args.dovecot_fill,
                json_output=args.json,
                output=args.output or pathlib.Path("bench-results/compare-mailbox.json"),
            )
        )
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
            only_single=args.only == "single",
            json_output=args.json,
            output=args.output or pathlib.Path("bench-results/compare.json"),
        )
    )


def _imap(args: argparse.Namespace) -> int:
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


def _register_lmtp(bench_sub: Any) -> None:
    b: argparse.ArgumentParser = bench_sub.add_parser("lmtp", help="LMTP deliveries/s and 20 MiB delivery time")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument(
        "--host",
        default=None,
        help="target an existing lmtpd instead of starting one (its limit must admit 20 MiB plus trace headers)",
    )
    b.add_argument("--port", type=int, default=2424)
    b.add_argument("--rcpt", default="bench@bench.test", help="recipient (with --host: must exist)")
    b.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput run")
    b.add_argument("--out", default="bench-results/lmtp.json", help="where the JSON result is written")
    b.set_defaults(func=_lmtp)


def _lmtp(args: argparse.Namespace) -> int:
    from bench.lmtp_bench import BenchOptions, run_bench

    return run_bench(
        BenchOptions(json=args.json, host=args.host, port=args.port, rcpt=args.rcpt, seconds=args.seconds, out=args.out)
    )


def _register_backup(bench_sub: Any) -> None:
    p: argparse.ArgumentParser = bench_sub.add_parser("backup", help="full/incremental backup, restore, writer stall")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--size-mib", type=int, default=1024, help="store size to build (default 1024 MiB)")
    p.add_argument("--dir", type=pathlib.Path, default=None, help="work directory (default: a temp dir)")
    p.add_argument("--max-rate", type=float, metavar="MIB", help="full backup written at most MIB MiB/s")
    p.set_defaults(func=_backup)


def _backup(args: argparse.Namespace) -> int:
    from bench.backup_bench import BackupBenchOptions, run_bench

    return run_bench(
        BackupBenchOptions(json_output=args.json, size_mib=args.size_mib, work_dir=args.dir, max_rate_mib=args.max_rate)
    )


def _register_failover(bench_sub: Any) -> None:
    b = bench_sub.add_parser("failover", help="kill/switchover trials against the demo cluster")
    b.add_argument("--config", type=pathlib.Path, default=DEFAULT_CONFIG, help="cluster.yaml (default ./cluster.yaml)")
    b.add_argument("--zk-hosts", default=None, help="host:port,... of ZooKeeper instead of the configured members")
    b.add_argument("--trials", type=int, default=5, help="SIGKILL trials (default 5)")
    b.add_argument("--switchovers", type=int, default=None, help="switchover trials (default: --trials)")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--out", default="bench-results/failover.json", help="where the JSON result is written")
    b.set_defaults(func=guard_ha_errors(_failover))


def _failover(args: argparse.Namespace) -> int:
    from bench.failover_bench import run_bench

    return run_bench(
        load(args.config),
        trials=args.trials,
        switchovers=args.switchovers if args.switchovers is not None else args.trials,
        as_json=args.json,
        out=pathlib.Path(args.out),
        zk_hosts=args.zk_hosts,
    )
