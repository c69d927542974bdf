"""The web app (operators' console, users' page) on every node, active or not.

Unlike the mail services it is not tied to leadership: each node's agent
keeps one `mailha web serve --config` running inside the node's namespace,
listening on 0.0.0.0:ports.web, i.e. on the node's own address and, while
this node holds it, on the floating IP. So the console stays reachable on
the survivor while the other node is down, and it follows the active node's
store by itself (web/node_status.py).

It runs as the agent's account: the cluster status it shows reads the
ZooKeeper digest secret and the namespaces' interfaces (who holds the
floating IP), as `mailha status` does. Started through children.spawn, so
the kernel kills it with the agent. A web that keeps dying is restarted with
a pause and logged; it never affects the node's health or the failover
decision (mail service first).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time

import trio

from haagent.children import MAILHA_PREFIX, spawn
from haagent.demo_tls import ensure_tls_files
from nodeconf.config import ClusterConfig
from nodeconf.paths import node_runtime_dir

log = logging.getLogger("mailha.haagent.web")

POLL = 0.5
MAX_RESTARTS = 3
RESTART_WINDOW = 60.0
PAUSE = 30.0  # after MAX_RESTARTS exits within RESTART_WINDOW
STOP_TIMEOUT = 5.0


def web_argv(cluster: ClusterConfig) -> tuple[str, ...]:
    if cluster.source is None:
        raise ValueError("the web app needs the cluster config as a file (--config)")
    cert, key, _made = ensure_tls_files(cluster)
    argv: tuple[str, ...] = (
        *MAILHA_PREFIX,
        "web", "serve", "--config", str(cluster.source.resolve()),
        "--listen", f"0.0.0.0:{cluster.ports.web}", "--cert", str(cert), "--key", str(key),
    )  # fmt: skip
    if cluster.web.backup_repo is not None:
        argv += ("--backup-repo", str(cluster.web.backup_repo))
    if cluster.web.backup_metrics_file is not None:
        argv += ("--backup-metrics-file", str(cluster.web.backup_metrics_file))
    return argv


async def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    with trio.move_on_after(STOP_TIMEOUT):
        while proc.poll() is None:
            await trio.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


async def serve_web(cluster: ClusterConfig, node: str) -> None:
    """Keep the node's web app running until cancelled (then stop it)."""
    if cluster.ports.web == 0:
        return
    try:
        argv = web_argv(cluster)
    except (ValueError, OSError) as exc:
        log.error("web app not started: %s", exc)
        return
    log_dir = node_runtime_dir(cluster, node) / "log"
    starts: list[float] = []
    while True:
        now = time.monotonic()
        starts = [t for t in starts if now - t < RESTART_WINDOW]
        if len(starts) >= MAX_RESTARTS:
            log.error("web exited %d times in %.0f s; next try in %.0f s", len(starts), now - starts[0], PAUSE)
            await trio.sleep(PAUSE)
            starts.clear()
        starts.append(time.monotonic())
        proc = spawn("web", argv, log_dir)  # on the trio thread: see haagent/children.py
        log.info("web app on port %d (pid %d)", cluster.ports.web, proc.pid)
        try:
            while proc.poll() is None:
                await trio.sleep(POLL)
        finally:
            with trio.CancelScope(shield=True):
                await _stop(proc)
        log.warning("web exited with %s; restarting it", proc.returncode)
