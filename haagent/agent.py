"""`mailha agent --config cluster.yaml --node NAME`: the HA agent process.

One trio nursery holds the decision loop, the health checker, the signal
watcher and the GARP announcements. kazoo's threads reach the loop only
through `Wake.poke` (trio's run_sync_soon: it never blocks the caller), so a
watch firing or the session going SUSPENDED starts the next tick at once
instead of at the next health interval.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable

import trio
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.retry import KazooRetry

from haagent import floating_ip, front_ends, node_web
from haagent.actuator import NodeActuator
from haagent.coordination_kazoo import KazooCoordination
from haagent.decision import DecisionLoop, Health
from haagent.errors import ActionFailed, HaAgentError
from haagent.metrics import AgentMetrics
from haagent.supervisor import Supervisor
from haagent.zk_client import ZkClientError, make_client
from nodeconf.config import ClusterConfig
from nodeconf.paths import shared_store_dir

log = logging.getLogger("mailha.haagent")

FAILED_COOLDOWN = 5.0


class Wake:
    """A doorbell any thread may ring; the loop waits on it between ticks.
    `on_ring` runs on the trio thread for every ring (it must not block)."""

    def __init__(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self.event = trio.Event()
        self.on_ring: Callable[[], None] | None = None

    def _ring(self) -> None:
        self.event.set()
        if self.on_ring is not None:
            self.on_ring()

    def poke(self) -> None:
        try:
            self.token.run_sync_soon(self._ring)
        except trio.RunFinishedError:
            pass

    async def wait(self, timeout: float) -> None:
        with trio.move_on_after(timeout):
            await self.event.wait()
        self.event = trio.Event()


def connect_coordination(
    cluster: ClusterConfig, *, hosts: str | None = None, deadline: float = 0.0
) -> KazooCoordination:
    """Connect, retrying until ZooKeeper answers (or `deadline`, monotonic, passes)."""
    while True:
        try:
            client = make_client(
                cluster.zookeeper,
                hosts,
                timeout=5.0,
                connection_retry=KazooRetry(max_tries=-1, delay=0.05, backoff=1.5, max_jitter=0.05, max_delay=0.5),
                command_retry=KazooRetry(max_tries=0),
            )
            try:
                client.start(timeout=5.0)
            except KazooTimeoutError:
                client.close()
                raise ZkClientError("ZooKeeper did not answer within 5 s") from None
            coord = KazooCoordination(client, "")
            coord.ensure_layout()
            return coord
        except (ZkClientError, HaAgentError) as exc:
            if deadline and time.monotonic() > deadline:
                raise HaAgentError(f"cannot reach ZooKeeper: {exc}") from None
            # The agent waits for ever and says so; an operator command just retries quietly.
            log.log(logging.INFO if deadline else logging.WARNING, "waiting for ZooKeeper: %s", exc)
            time.sleep(0.5)


async def _health_checks(supervisor: Supervisor, loop: DecisionLoop, interval: float, wake: Wake) -> None:
    last = supervisor.health()
    while True:
        supervisor.prewarm()
        await trio.sleep(interval)
        await supervisor.check_once(loop.held_epoch)
        if supervisor.health() is not last:
            last = supervisor.health()
            wake.poke()


async def _stop_on_signal(cancel: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("got %s: releasing and stopping", signal.Signals(signum).name)
            cancel.cancel()
            return


async def run_agent(cluster: ClusterConfig, node: str) -> None:
    cluster.node(node)  # validate the name before connecting anywhere
    coord = await trio.to_thread.run_sync(connect_coordination, cluster)
    wake = Wake()
    coord.set_waker(wake.poke)
    try:
        await trio.to_thread.run_sync(floating_ip.prepare, cluster.floating_ip)
    except ActionFailed as exc:
        log.error("no refuser and no early listeners on the floating IP: %s", exc)
    supervisor = Supervisor(cluster, node, shared_store_dir(cluster.storage), front_ends.FRONT_ENDS)
    metrics = AgentMetrics(node)
    try:
        metrics.serve(str(cluster.node(node).address.ip), cluster.ports.metrics)
    except OSError as exc:
        log.warning("metrics not served on port %d: %s", cluster.ports.metrics, exc)
    async with trio.open_nursery() as nursery:
        actuator = NodeActuator(cluster, node, supervisor, nursery)
        loop = DecisionLoop(
            node,
            coord,
            actuator,
            session_timeout=cluster.zookeeper.session_timeout,
            failed_cooldown=FAILED_COOLDOWN,
            peers=tuple(n.name for n in cluster.nodes),
        )
        wake.on_ring = loop.interrupt_if_uncertain
        nursery.start_soon(_health_checks, supervisor, loop, cluster.health_interval, wake)
        nursery.start_soon(node_web.serve_web, cluster, node)  # on every node, whatever its role
        with trio.CancelScope() as main:
            nursery.start_soon(_stop_on_signal, main)
            last = ""
            while True:
                sentence = await loop.tick()
                if sentence != last:
                    log.info("%s", sentence)
                    last = sentence
                metrics.update(
                    loop.state,
                    loop.epoch,
                    loop.transitions,
                    supervisor.health() is Health.OK,
                    shared_store_dir(cluster.storage),
                )
                if not loop.wants_immediate_tick():
                    await wake.wait(cluster.health_interval)
        # Orderly exit: hand over cleanly so the standby need not fence us.
        with trio.CancelScope(shield=True), trio.move_on_after(15):
            await loop.step_down("switchover (agent stopping)")
            await supervisor.stop_all(drain=True)
        nursery.cancel_scope.cancel()
    await trio.to_thread.run_sync(coord.close)
    log.info("agent %s stopped", node)


def main(cluster: ClusterConfig, node: str) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # kazoo logs every reconnect attempt at WARNING; our sentences say enough.
    logging.getLogger("kazoo.client").setLevel(logging.ERROR)
    try:
        trio.run(run_agent, cluster, node)
    except HaAgentError as exc:
        log.error("%s", exc)
        return 1
    return 0
