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
from mailha.config import ClusterConfig

log = logging.getLogger("mailha.haagent")


class NodeActuator:
    def __init__(self, cluster: ClusterConfig, node: str, supervisor: Supervisor, nursery: trio.Nursery) -> None:
        self.cluster = cluster
        self.node = node
        self.supervisor = supervisor
        self.nursery = nursery
        self._release_epoch = 0
        self.timings: dict[str, float] = {}  # last takeover's step durations, for the log

    async def fence(self, previous: LastActive, epoch: int) -> None:
        t0 = time.monotonic()
        result = await fencing.fence(self.cluster, previous.node, epoch)
        self.timings["fence"] = time.monotonic() - t0
        log.info("fenced %s with %s: %s", previous.node, result.method, result.detail)

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

    async def stop_writes(self) -> None:
        await self.supervisor.stop_writes()
        await self._drop_ip()

    async def resume_writes(self, epoch: int) -> None:
        await self.supervisor.resume_writes(epoch)
        await trio.to_thread.run_sync(floating_ip.add, self.cluster.floating_ip)
        self.nursery.start_soon(floating_ip.announce, self.cluster.floating_ip)

    async def release(self, drain: bool) -> float:
        epoch = self.supervisor.epoch
        self._release_epoch = epoch
        stopped_at = time.time()
        if drain:
            # Planned: the front ends say BYE [UNAVAILABLE] over the floating
            # IP first, so the address goes only after they are gone.
            await self.supervisor.stop_front_ends(drain=True)
            await self.supervisor.stop_writes()
            await self._drop_ip()
            if self.cluster.storage.deactivate == "none":
                # Nothing to unmount: hand over now and let the store (writes
                # suspended, about to be fenced by the new epoch) finish its
                # graceful shutdown after the leader znode is gone.
                return stopped_at
        else:
            # Losing certainty: stop writing and drop the address before
            # anything slower happens.
            await self.supervisor.stop_writes()
            await self._drop_ip()
            await self.supervisor.stop_front_ends(drain=False)
        await self.after_release()
        return stopped_at

    async def after_release(self) -> None:
        """Stop the store and deactivate storage (idempotent)."""
        if self.supervisor.children or self.supervisor.phase is not Phase.STOPPED:
            await self.supervisor.stop_store()
            try:
                await storage.deactivate(self.cluster.storage, self.node, self._release_epoch)
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
