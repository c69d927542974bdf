"""`mailha web serve`: the web app over HTTPS (HTTP/1.1 and HTTP/2) on Hypercorn's trio worker."""

from __future__ import annotations

import logging
import pathlib
import signal
from dataclasses import dataclass

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from nodeconf.config import ClusterConfig
from nodeconf.paths import store_socket_path
from nodeconf.services import IMAPD_METRICS_OFFSET, LMTPD_METRICS_OFFSET
from web.app import create_app
from web.audit import AuditTrail
from web.backup_panel import BackupPanel
from web.context import WebDeps
from web.login_limiter import WebLoginLimiter
from web.metrics_sampler import MetricsSampler
from web.node_status import NodeStatus
from web.sessions import SessionStore
from web.store_access import StoreAccess

log = logging.getLogger("mailha.web")


@dataclass(frozen=True)
class WebOptions:
    store: str
    listen: str
    cert: pathlib.Path
    key: pathlib.Path
    cluster: ClusterConfig | None = None
    sample_interval: float = 5.0
    node_name: str = "standalone"
    backup_repo: pathlib.Path | None = None  # the repository whose last backup the console shows
    backup_metrics_file: pathlib.Path | None = None  # its metrics textfile, if not in the repository
    scrape: tuple[tuple[str, str], ...] = ()  # standalone: (service, HOST:PORT) of front-end metrics


def build_deps(options: WebOptions) -> WebDeps:
    store = StoreAccess(options.store)
    if options.cluster is not None:
        nodes = {n.name: str(store_socket_path(options.cluster, n.name)) for n in options.cluster.nodes}
        base = options.cluster.ports.metrics
        endpoints = {
            n.name: {
                "imapd": f"{n.address.ip}:{base + IMAPD_METRICS_OFFSET}",
                "lmtpd": f"{n.address.ip}:{base + LMTPD_METRICS_OFFSET}",
            }
            for n in options.cluster.nodes
        }
    else:
        nodes = {options.node_name: options.store.removeprefix("unix:")}
        endpoints = {options.node_name: dict(options.scrape)} if options.scrape else {}
    return WebDeps(
        store=store,
        sessions=SessionStore(),
        limiter=WebLoginLimiter(),
        audit=AuditTrail(),
        status=NodeStatus(store, options.cluster),
        sampler=MetricsSampler(store, nodes, interval=options.sample_interval, endpoints=endpoints),
        backups=BackupPanel(options.backup_repo, options.backup_metrics_file),
    )


def hypercorn_config(options: WebOptions) -> Config:
    config = Config()
    config.bind = [options.listen]
    config.certfile = str(options.cert)
    config.keyfile = str(options.key)
    config.alpn_protocols = ["h2", "http/1.1"]
    config.accesslog = None  # actions are audited by the app; URLs may carry search terms
    config.include_server_header = False
    return config


def run_web(options: WebOptions) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # The console reads the cluster's status through a new ZooKeeper connection per poll;
    # kazoo would log two lines for each.
    logging.getLogger("kazoo.client").setLevel(logging.WARNING)
    deps = build_deps(options)
    app = create_app(deps)
    config = hypercorn_config(options)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            stop = trio.Event()

            async def wait_signal() -> None:
                async for signum in signals:
                    log.info("signal %d: stopping", signum)
                    stop.set()
                    return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_signal)
                if options.cluster is not None:
                    try:
                        await deps.status.status()  # find the active node's store before the first request
                    except Exception as exc:  # the console shows the status error on its own later
                        log.warning("cluster status not available yet: %s", exc)
                log.info("web on https://%s (store %s)", options.listen, options.store)
                await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
                nursery.cancel_scope.cancel()

    trio.run(main)
    return 0
