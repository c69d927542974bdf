"""The web's way to the store: the admin client (store.admin.Admin), called from worker threads.

One gRPC channel for the process; each call runs in a thread so the trio
event loop never blocks. Store refusals arrive as AdminError with the
store's own message, which the pages show.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio.to_thread

from store.admin import Admin, AdminError

P = ParamSpec("P")
T = TypeVar("T")

__all__ = ["AdminError", "StoreAccess"]


class StoreAccess:
    def __init__(self, address: str) -> None:
        self.address = address
        self._admin: Admin | None = None

    @property
    def admin(self) -> Admin:
        if self._admin is None:
            self._admin = Admin.connect(self.address)
        return self._admin

    def retarget(self, address: str) -> None:
        """Talk to another store from now on (cluster mode: the store of the node that is active now)."""
        if address != self.address:
            old, self._admin = self._admin, None
            self.address = address
            if old is not None:
                old.close()

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    async def call(self, method: Callable[[Admin], T]) -> T:
        """`await store.call(lambda a: a.quota(user))`."""
        return await anyio.to_thread.run_sync(lambda: method(self.admin))

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
