"""Activating the shared storage before the store opens it.

dir           the demo: storage.path is a directory every node sees
              (one host); activation makes sure it exists and is writable
shell:<cmd>   real hosts: a command that mounts the shared volume (as
              HACMP varies on its volume group); environment NODE, EPOCH,
              STORAGE_PATH. LMDB must not be opened over a network
              filesystem, so this is a block device that only the
              active node mounts.
none          (deactivate only) nothing to do
"""

from __future__ import annotations

import os
import subprocess

import trio

from haagent.errors import ActionFailed
from nodeconf.config import StorageConfig
from nodeconf.paths import shared_store_dir

SHELL_TIMEOUT = 60.0


def _shell(command: str, node: str, epoch: int, storage: StorageConfig) -> None:
    env = dict(os.environ, NODE=node, EPOCH=str(epoch), STORAGE_PATH=str(storage.path))
    try:
        proc = subprocess.run(
            ["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=SHELL_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise ActionFailed(f"storage command timed out after {SHELL_TIMEOUT:.0f} s") from None
    if proc.returncode != 0:
        raise ActionFailed(f"storage command exited with {proc.returncode}: {proc.stderr.strip()[:200]}")


def activate_blocking(storage: StorageConfig, node: str, epoch: int) -> None:
    method = storage.activate
    if method.startswith("shell:"):
        _shell(method.removeprefix("shell:"), node, epoch, storage)
    elif method not in ("dir", "none"):
        raise ActionFailed(f"storage.activate: unknown method {method!r}")
    target = shared_store_dir(storage)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ActionFailed(f"shared storage {target}: {exc.strerror}") from None
    if not os.access(target, os.W_OK):
        raise ActionFailed(f"shared storage {target} is not writable")


def deactivate_blocking(storage: StorageConfig, node: str, epoch: int) -> None:
    method = storage.deactivate
    if method.startswith("shell:"):
        _shell(method.removeprefix("shell:"), node, epoch, storage)


async def activate(storage: StorageConfig, node: str, epoch: int) -> None:
    await trio.to_thread.run_sync(activate_blocking, storage, node, epoch)


async def deactivate(storage: StorageConfig, node: str, epoch: int) -> None:
    await trio.to_thread.run_sync(deactivate_blocking, storage, node, epoch)
