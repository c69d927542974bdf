"""What the decision loop does to this node, in the takeover order:
fence the previous active, activate shared storage, start the store with
--fence EPOCH (it raises its stored epoch before it accepts any write), add
the floating IP and announce it, start the front ends with --epoch EPOCH.
"""

from __future__ import annotations

import itertools
import logging
import time

import trio

from haagent import fencing, floating_ip, storage
from haagent.coordination import LastActive
from haagent.decision import Health
from haagent.errors import ActionFailed
from haagent.supervisor import Phase, Supervisor
from nodeconf.config import ClusterConfig

log = logging.getLogger("mailha.haagent")

# How long a released active keeps its sessions for the new writer to fence its store.
HANDOVER_WAIT = 3.0


class NodeActuator:
    def __init__(self, cluster: ClusterConfig, node: str, supervisor: Supervisor, nursery: trio.Nursery) -> None:
        self.cluster = cluster
        self.node = node
        self.supervisor = supervisor
        self.nursery = nursery
        self._handing_over = False  # released on a switchover; services still up until after_release
        self.timings: dict[str, float] = {}  # last takeover's step durations, for the log

    async def fence(self, previous: LastActive, epoch: int) -> None:
        t0 = time.monotonic()
        result = await fencing.fence(self.cluster, previous.node, epoch)
        self.timings["fence"] = time.monotonic() - t0
        why = " (first activation: not known to stand by)" if previous.epoch == 0 else ""
        log.info("fenced %s%s with %s: %s", previous.node, why, result.method, result.detail)

    async def activate(self, epoch: int) -> None:
        marks = {"begin": time.monotonic()}
        await storage.activate(self.cluster.storage, self.node, epoch)
        marks["storage"] = time.monotonic()

        async def claim() -> None:
            marks["store"] = time.monotonic()
            await trio.to_thread.run_sync(floating_ip.add, self.cluster.floating_ip)
            self.nursery.start_soon(floating_ip.announce, self.cluster.floating_ip)
            marks["ip"] = time.monotonic()

        early = floating_ip.nonlocal_bind_allowed()
        await self.supervisor.start(epoch, claim, early_front_ends=early)
        marks["front_ends"] = time.monotonic()
        names = list(marks)
        self.timings.update({b: marks[b] - marks[a] for a, b in itertools.pairwise(names)})
        log.info(
            "activated epoch %d (front ends started %s): %s",
            epoch,
            "with the store" if early else "after the address",
            ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in self.timings.items()),
        )

    async def restart_services(self, epoch: int) -> None:
        """Paused active whose services failed: stop everything and start it
        again with the same epoch (the floating IP stays: it is ours)."""
        await self.supervisor.stop_all(drain=False)

        async def claim() -> None:
            await trio.to_thread.run_sync(floating_ip.add, self.cluster.floating_ip)

        await self.supervisor.start(epoch, claim, early_front_ends=floating_ip.nonlocal_bind_allowed())
        log.info("services restarted with epoch %d", epoch)

    async def stop_writes(self, epoch: int) -> None:
        await self.supervisor.stop_writes(epoch)
        await self._drop_ip()

    async def resume_writes(self, epoch: int) -> None:
        await self.supervisor.resume_writes(epoch)
        await trio.to_thread.run_sync(floating_ip.add, self.cluster.floating_ip)
        self.nursery.start_soon(floating_ip.announce, self.cluster.floating_ip)

    async def release(self, epoch: int, drain: bool) -> float:
        stopped_at = time.time()
        if drain and self.cluster.storage.deactivate == "none" and self.supervisor.phase is Phase.RUNNING:
            # Planned, nothing to unmount: the hand-over (AGENT.md, "No black
            # hole"). The address becomes the refuser at once; sessions already
            # here keep working until the new writer fences this store (its
            # writes are refused from then on) or the new holder's ARP moves
            # their packets; after_release then says BYE and stops everything.
            self.supervisor.hand_over()
            try:
                await trio.to_thread.run_sync(floating_ip.refuse_new_connections, self.cluster.floating_ip)
            except ActionFailed as exc:
                log.warning("new connections are not refused during the hand-over: %s", exc)
            await self._drop_ip()
            self._handing_over = True
            return stopped_at
        if drain:
            # Planned with storage to hand over: the front ends say BYE
            # [UNAVAILABLE] first, and the store stops before the unmount.
            await self.supervisor.stop_front_ends(drain=True)
            await self.supervisor.stop_writes(epoch)
            await self._drop_ip()
        else:
            # Losing certainty: stop writing and drop the address before
            # anything slower happens.
            await self.supervisor.stop_writes(epoch)
            await self._drop_ip()
            await self.supervisor.stop_front_ends(drain=False)
        await self.after_release(epoch)
        return stopped_at

    async def after_release(self, epoch: int) -> None:
        """Stop the store that ran under `epoch` and deactivate storage (idempotent)."""
        if self._handing_over:
            self._handing_over = False
            t0 = time.monotonic()
            fenced = await self.supervisor.wait_fenced(epoch, HANDOVER_WAIT)
            log.info(
                "hand-over: %s after %.0f ms; draining",
                "the new writer fenced my store" if fenced else "no new writer yet",
                (time.monotonic() - t0) * 1000,
            )
            await self.supervisor.stop_front_ends(drain=True)
            if not fenced:
                await self.supervisor.stop_writes(epoch)
            await trio.to_thread.run_sync(floating_ip.accept_new_connections)
        if self.supervisor.children or self.supervisor.phase is not Phase.STOPPED:
            await self.supervisor.stop_store()
            try:
                await storage.deactivate(self.cluster.storage, self.node, epoch)
            except ActionFailed as exc:
                log.error("could not deactivate storage: %s", exc)

    async def _drop_ip(self) -> None:
        try:
            dropped = await trio.to_thread.run_sync(floating_ip.remove, self.cluster.floating_ip)
        except ActionFailed as exc:
            log.error("could not drop the floating IP: %s", exc)
            return
        if dropped:
            self.nursery.start_soon(floating_ip.retire_refuser, self.cluster.floating_ip)

    def health(self) -> Health:
        return self.supervisor.health()
