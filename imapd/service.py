"""`mailha imapd serve`: one imapd process on a running store."""

from __future__ import annotations

import logging
import pathlib
import signal
import subprocess
import sys
from dataclasses import dataclass
from functools import partial
from types import FrameType

import lmdb
import trio

from imapd.errors import TlsSetupError
from imapd.memory_release import freeze_startup_heap
from imapd.server import Endpoint, parse_endpoint, serve
from imapd.session.context import DEFAULT_APPEND_LIMIT, ServerSettings
from imapd.store_grpc import GrpcStore
from imapd.tls import server_context
from nodeconf.frontend_metrics import FrontEndMetrics
from store.errors import StoreError
from store.reader import LocalReader

log = logging.getLogger("imapd")


@dataclass(frozen=True)
class ImapdOptions:
    store: str
    epoch: int
    listen: tuple[str, ...] = ("127.0.0.1:1143",)
    tls_listen: tuple[str, ...] = ("127.0.0.1:1993",)
    cert: pathlib.Path | None = None
    key: pathlib.Path | None = None
    allow_plaintext_login: bool = False
    append_limit: int = DEFAULT_APPEND_LIMIT
    connections_per_user: int = 50
    max_prelogin_per_address: int = 20
    envelope_cache_mb: float = 8.0
    sort_cache_mb: float = 128.0
    mailbox_linger: float = 15.0  # seconds (ServerSettings.mailbox_linger)
    # >1: this process supervises N worker processes sharing the ports (SO_REUSEPORT).
    workers: int = 1
    reuse_port: bool = False
    # The store's data directory when it runs on this host: reads go to its LMDB directly.
    store_data: pathlib.Path | None = None
    metrics_listen: str | None = None  # HOST:PORT for Prometheus metrics (single process only)


def run_imapd(options: ImapdOptions, argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for name, value in (
        ("--envelope-cache-mb", options.envelope_cache_mb),
        ("--sort-cache-mb", options.sort_cache_mb),
        ("--mailbox-linger", options.mailbox_linger),
    ):
        if not 0 <= value < 1 << 20:  # also NaN
            print(f"mailha imapd serve: {name} must be a number from 0 to {1 << 20}, not {value}", file=sys.stderr)
            return 2
    if options.workers > 1:
        assert argv is not None
        return _supervise_workers(options.workers, argv)
    ssl_context = None
    if options.cert is not None and options.key is not None:
        try:
            ssl_context = server_context(options.cert, options.key)
        except TlsSetupError as exc:
            print(f"mailha imapd serve: {exc}", file=sys.stderr)
            return 2
    elif options.tls_listen:
        print("mailha imapd serve: --tls-listen needs --cert and --key", file=sys.stderr)
        return 2
    endpoints: list[Endpoint] = [parse_endpoint(a, False) for a in options.listen]
    endpoints += [parse_endpoint(a, True) for a in options.tls_listen]
    if not endpoints:
        print("mailha imapd serve: give --listen and/or --tls-listen", file=sys.stderr)
        return 2
    settings = ServerSettings(
        append_limit=options.append_limit,
        allow_plaintext_login=options.allow_plaintext_login,
        tls_available=ssl_context is not None,
        connections_per_user=options.connections_per_user,
        max_prelogin_per_address=options.max_prelogin_per_address,
        envelope_cache_bytes=int(options.envelope_cache_mb * 1024 * 1024),
        sort_cache_bytes=int(options.sort_cache_mb * 1024 * 1024),
        mailbox_linger=options.mailbox_linger,
    )

    local = None
    if options.store_data is not None:
        try:
            local = LocalReader(options.store_data)
        except (StoreError, lmdb.Error) as exc:
            print(f"mailha imapd serve: --store-data {options.store_data}: {exc}", file=sys.stderr)
            return 2
    metrics: FrontEndMetrics | None = None
    if options.metrics_listen:
        metrics = FrontEndMetrics("imapd")
        try:
            endpoint = parse_endpoint(options.metrics_listen, False)
            metrics.serve(endpoint.host, endpoint.port)
        except (ValueError, OSError) as exc:
            # Metrics are not worth an outage: serve mail without them.
            log.error("no metrics on %s: %s", options.metrics_listen, exc)
            metrics = None

    async def main() -> None:
        store = GrpcStore(options.store, options.epoch, local=local)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    partial(
                        serve, store, settings, ssl_context, endpoints, reuse_port=options.reuse_port, metrics=metrics
                    )
                )
                names = ", ".join(f"{e.host}:{e.port}{' (TLS)' if e.implicit_tls else ''}" for e in endpoints)
                log.info("imapd listening on %s, store %s, writer epoch %d", names, options.store, options.epoch)
        finally:
            await store.aclose()

    freeze_startup_heap()
    trio.run(main)
    log.info("imapd stopped")
    return 0


def _supervise_workers(count: int, argv: list[str]) -> int:
    """Start `count` single workers on shared ports; forward drain signals; wait for all.

    Per-process state (login throttle, per-user connection cap, envelope
    cache, Watch feeds) is per worker.
    """
    # Workers die with this process (SIGKILL from the kernel), even one stuck in a loop.
    cmd = [
        "setpriv",
        "--pdeathsig",
        "KILL",
        "--",
        sys.executable,
        "-m",
        "mailha.cli",
        *argv,
        "--workers",
        "1",
        "--reuse-port",
    ]
    children = [subprocess.Popen(cmd) for _ in range(count)]
    log.info("imapd: %d workers %s", count, [c.pid for c in children])

    def forward(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        signal.signal(signum, forward)
    status = 0
    for child in children:
        status = max(status, child.wait())
    return status
