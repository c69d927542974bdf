"""Fencing the previous active node before this one writes.

Methods are tried in the configured order until one succeeds (as HDFS
ZKFC does); if every method fails the takeover is abandoned.

    netns-kill    the lab's STONITH for the demo cluster: SIGKILL every
                  process in the old node's network namespace (its agent,
                  store, imapd, lmtpd) and remove the floating IP from it
    shell:<cmd>   run <cmd> with /bin/sh; environment NODE (the node to
                  fence), NAMESPACE, EPOCH (the new epoch), FLOATING_IP;
                  exit status 0 means fenced
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass

import trio

from haagent import floating_ip
from haagent.errors import ActionFailed
from haagent.netns import pids_in_netns
from nodeconf.config import ClusterConfig

SHELL_TIMEOUT = 30.0
KILL_WAIT = 2.0


@dataclass(frozen=True)
class FenceResult:
    method: str
    detail: str


def _netns_kill(cluster: ClusterConfig, node: str) -> str:
    namespace = cluster.node(node).namespace
    me = os.getpid()
    pids = [pid for pid in pids_in_netns(namespace) if pid != me]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # SIGKILL is asynchronous: wait until the kernel has reaped them (a
    # process stuck in D state would still hold LMDB pages it could write).
    deadline = time.monotonic() + KILL_WAIT
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _alive(pid)]
        if alive:
            time.sleep(0.01)
    if alive:
        raise ActionFailed(f"netns-kill: processes {alive} in {namespace} survived SIGKILL")
    dropped = floating_ip.remove_in_namespace(cluster.floating_ip, namespace)
    return f"killed {len(pids)} process(es) in {namespace}" + (", removed the floating IP" if dropped else "")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            # A zombie has released its memory and files: it cannot write.
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _shell(cluster: ClusterConfig, node: str, epoch: int, command: str) -> str:
    env = dict(os.environ)
    env.update(
        NODE=node,
        NAMESPACE=cluster.node(node).namespace,
        EPOCH=str(epoch),
        FLOATING_IP=str(cluster.floating_ip.address),
    )
    try:
        proc = subprocess.run(
            ["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=SHELL_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise ActionFailed(f"shell fencing timed out after {SHELL_TIMEOUT:.0f} s") from None
    if proc.returncode != 0:
        raise ActionFailed(f"shell fencing exited with {proc.returncode}: {proc.stderr.strip()[:200]}")
    return "shell fencing succeeded"


def fence_blocking(cluster: ClusterConfig, node: str, epoch: int) -> FenceResult:
    errors: list[str] = []
    for method in cluster.fencing:
        try:
            if method == "netns-kill":
                return FenceResult(method, _netns_kill(cluster, node))
            if method.startswith("shell:"):
                return FenceResult(method, _shell(cluster, node, epoch, method.removeprefix("shell:")))
            errors.append(f"{method}: unknown method")
        except ActionFailed as exc:
            errors.append(f"{method}: {exc}")
    raise ActionFailed(f"could not fence {node}: " + "; ".join(errors))


async def fence(cluster: ClusterConfig, node: str, epoch: int) -> FenceResult:
    return await trio.to_thread.run_sync(fence_blocking, cluster, node, epoch)
