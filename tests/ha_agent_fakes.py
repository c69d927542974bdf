"""Fakes of the agent's node side for decision-loop unit tests."""

from __future__ import annotations

import trio

from haagent.coordination import LastActive
from haagent.decision import Health
from haagent.errors import ActionFailed


class Clock:
    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FakeActuator:
    """Records what the loop asked of the node; failures can be injected."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.calls: list[str] = []
        self.fenced: list[LastActive] = []
        self.writable = False
        self.ip = False
        self.running = False
        self.epoch = 0
        self.fail_fence = False
        self.fail_activate = False
        self.hang_activate = False  # activation blocks until cancelled
        self.state_of_health = Health.STOPPED

    async def fence(self, previous: LastActive, epoch: int) -> None:
        self.calls.append(f"fence {previous.node}")
        if self.fail_fence:
            raise ActionFailed("fencing method refused")
        self.fenced.append(previous)

    async def activate(self, epoch: int) -> None:
        self.calls.append(f"activate {epoch}")
        if self.fail_activate:
            raise ActionFailed("store did not start")
        if self.hang_activate:
            await trio.sleep_forever()
        self.epoch = epoch
        self.running = self.writable = self.ip = True
        self.state_of_health = Health.OK

    async def stop_writes(self, epoch: int) -> None:
        self.calls.append(f"stop_writes {epoch}")
        self.writable = self.ip = False

    async def resume_writes(self, epoch: int) -> None:
        self.calls.append(f"resume_writes {epoch}")
        self.writable = self.ip = True

    async def restart_services(self, epoch: int) -> None:
        self.calls.append(f"restart_services {epoch}")
        self.running = self.writable = self.ip = True
        self.state_of_health = Health.OK

    async def release(self, epoch: int, drain: bool) -> float:
        self.calls.append(f"release {epoch} drain={drain}")
        self.running = self.writable = self.ip = False
        self.state_of_health = Health.STOPPED
        return self.clock()

    async def after_release(self, epoch: int) -> None:
        self.calls.append(f"after_release {epoch}")

    def health(self) -> Health:
        return self.state_of_health
