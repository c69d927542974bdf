"""Pre-login connection slots per source address (postscreen/anvil style).

A connection holds one of its address's `limit` slots from accept until it
logs in or goes away. One more waits up to `patience` seconds for a slot (a
burst of well-behaved clients that log in at once is served), then is turned
away. So one address can neither hold more than `limit` idle sockets nor
starve other addresses, whose slots are their own.
"""

from __future__ import annotations

import trio


class AddressSlots:
    def __init__(self, limit: int, patience: float) -> None:
        self.limit = limit
        self.patience = patience
        self._slots: dict[str, trio.Semaphore] = {}

    async def acquire(self, address: str) -> bool:
        """True once a slot is held; False after `patience` seconds without one."""
        slots = self._slots.setdefault(address, trio.Semaphore(self.limit))
        with trio.move_on_after(self.patience):
            await slots.acquire()
            return True
        self._forget_if_idle(address)
        return False

    def release(self, address: str) -> None:
        self._slots[address].release()
        self._forget_if_idle(address)

    def held(self, address: str) -> int:
        slots = self._slots.get(address)
        return 0 if slots is None else self.limit - slots.value

    def _forget_if_idle(self, address: str) -> None:
        slots = self._slots.get(address)
        if slots is not None and slots.value == self.limit and slots.statistics().tasks_waiting == 0:
            del self._slots[address]

    def __len__(self) -> int:
        return len(self._slots)
