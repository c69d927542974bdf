"""Fault injection: each fault is bounded in time and healed in a `finally`.

A fault is a function of a NemesisContext. It records `inject` (ok when the
fault is in place, fail when it could not be put in place) and `heal` events
in the history, so the checker can count faults and scenario checks can see
fault windows. Every wait is bounded; every fault undoes itself even when
interrupted (Ctrl-C, an exception); `heal_everything` is the last resort the
runner calls at the end of every scenario regardless.
"""

from __future__ import annotations

import contextlib
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import lmdb

from chaos.cluster_target import Target
from chaos.history import EventType, HistoryWriter, JsonValue, Op

PROCESS = "nemesis"
# Longest wait for a new active node after a fault (failover + service start).
FAILOVER_TIMEOUT = 45.0


class NemesisError(Exception):
    """A fault could not be injected (no active node, nothing to kill, ...)."""


@dataclass
class NemesisContext:
    target: Target
    history: HistoryWriter
    stop: threading.Event = field(default_factory=threading.Event)
    storage_path: pathlib.Path | None = None  # the shared LMDB storage, for the reader fault

    def sleep(self, seconds: float) -> None:
        """Bounded wait that ends early on stop (Ctrl-C)."""
        self.stop.wait(max(0.0, seconds))

    def fault(self, name: str, **details: JsonValue) -> contextlib.AbstractContextManager[FaultState]:
        return recorded_fault(self.history, name, **details)


@contextlib.contextmanager
def recorded_fault(history: HistoryWriter, name: str, **details: JsonValue) -> Iterator[FaultState]:
    """Record `inject` when the body calls state.injected(), and `heal` once the body has undone it.

    A body that raises before injecting records the injection as failed.
    """
    info: dict[str, JsonValue] = {"fault": name, "phase": "inject", **details}
    state = FaultState(history, history.invoke(PROCESS, Op.NEMESIS, info))
    try:
        yield state
    except BaseException as exc:
        if not state.done:
            state.done = True
            history.complete(PROCESS, Op.NEMESIS, state.op_id, EventType.FAIL, {"error": str(exc)[:300]})
        else:
            history.record(PROCESS, Op.NEMESIS, {"fault": name, "phase": "heal", **details})
        raise
    if not state.done:
        history.complete(PROCESS, Op.NEMESIS, state.op_id, EventType.FAIL, {"error": "not injected"})
    else:
        history.record(PROCESS, Op.NEMESIS, {"fault": name, "phase": "heal", **details})


@dataclass
class FaultState:
    history: HistoryWriter
    op_id: int
    done: bool = False

    def injected(self) -> None:
        """The fault is in place now: complete the `inject` event at this moment."""
        if not self.done:
            self.done = True
            self.history.complete(PROCESS, Op.NEMESIS, self.op_id, EventType.OK, {})


def _active(ctx: NemesisContext) -> str:
    node = ctx.target.active_node()
    if node is None:
        node = ctx.target.wait_active(FAILOVER_TIMEOUT)
    if node is None:
        raise NemesisError("no active node to hit")
    return node


def _after_takeover(ctx: NemesisContext, old: str) -> None:
    """Wait (bounded) for service from another node, then bring every node's agent back."""
    ctx.target.wait_active(FAILOVER_TIMEOUT, other_than=old)
    ctx.target.restore_nodes()
    ctx.target.wait_active(FAILOVER_TIMEOUT)


# ---------------------------------------------------------------------------
# Faults


def kill_active_node(ctx: NemesisContext) -> None:
    """kill -9 of every process of the active node (agent, store, imapd, lmtpd)."""
    _kill_and_fail_over(ctx, "kill-node", "processes", ctx.target.node_pids)


def kill_agent(ctx: NemesisContext) -> None:
    """kill -9 of the active node's agent only (its children die by their death signal)."""
    _kill_and_fail_over(ctx, "kill-agent", "agent process", lambda node: ctx.target.service_pids(node, "agent"))


def _kill_and_fail_over(ctx: NemesisContext, fault: str, what: str, pids_of: Callable[[str], list[int]]) -> None:
    """SIGKILL `pids_of(active)`, wait for another node to take over, then bring the victim back."""
    node = _active(ctx)
    with ctx.fault(fault, node=node) as st:
        pids = pids_of(node)
        if not pids:
            raise NemesisError(f"no {what} on {node}")
        ctx.target.kill(pids, signal.SIGKILL)
        st.injected()
        try:
            ctx.target.wait_active(FAILOVER_TIMEOUT, other_than=node)
        finally:
            ctx.target.restore_nodes()
    ctx.target.wait_active(FAILOVER_TIMEOUT)


def pause_active(seconds: float) -> Callable[[NemesisContext], None]:
    """SIGSTOP every process of the active node for `seconds`, then SIGCONT."""

    def fault(ctx: NemesisContext) -> None:
        node = _active(ctx)
        name = "pause-long" if seconds > ctx.target.session_timeout() else "pause-short"
        with ctx.fault(name, node=node, seconds=seconds) as st:
            pids = ctx.target.node_pids(node)
            if not pids:
                raise NemesisError(f"no processes on {node}")
            try:
                ctx.target.kill(pids, signal.SIGSTOP)
                st.injected()
                ctx.sleep(seconds)
            finally:
                ctx.target.kill(pids, signal.SIGCONT)
        if seconds > ctx.target.session_timeout():
            _after_takeover(ctx, node)
        else:
            ctx.target.wait_active(FAILOVER_TIMEOUT)

    return fault


def partition_active(kind: str, seconds: float) -> Callable[[NemesisContext], None]:
    """Cut the active node off (kind: zookeeper, clients, full) for `seconds`, then heal."""

    def fault(ctx: NemesisContext) -> None:
        node = _active(ctx)
        with ctx.fault(f"partition-{kind}", node=node, seconds=seconds) as st:
            try:
                ctx.target.partition(node, kind)
                st.injected()
                ctx.sleep(seconds)
            finally:
                ctx.target.heal_partition(node)
        ctx.target.restore_nodes()
        ctx.target.wait_active(FAILOVER_TIMEOUT)

    return fault


def flapping_partition(flips: int, period: float) -> Callable[[NemesisContext], None]:
    """Full isolation of whichever node is active, on for `period`, off for `period`, `flips` times."""

    def fault(ctx: NemesisContext) -> None:
        for _ in range(flips):
            if ctx.stop.is_set():
                return
            node = ctx.target.active_node() or _active(ctx)
            with ctx.fault("partition-flap", node=node, seconds=period) as st:
                try:
                    ctx.target.partition(node, "full")
                    st.injected()
                    ctx.sleep(period)
                finally:
                    ctx.target.heal_partition(node)
            ctx.sleep(period)
        ctx.target.restore_nodes()
        ctx.target.wait_active(FAILOVER_TIMEOUT)

    return fault


def kill_zk_leader(seconds: float) -> Callable[[NemesisContext], None]:
    """kill -9 of the ZooKeeper leader; restart it after `seconds`."""

    def fault(ctx: NemesisContext) -> None:
        leader = ctx.target.zk_leader()
        if leader is None:
            raise NemesisError("no ZooKeeper leader")
        with ctx.fault("zk-kill-leader", member=leader, seconds=seconds) as st:
            try:
                ctx.target.zk_stop(leader)
                st.injected()
                ctx.sleep(seconds)
            finally:
                ctx.target.zk_start(leader)
        ctx.target.wait_active(FAILOVER_TIMEOUT)

    return fault


def zk_quorum_loss(seconds: float) -> Callable[[NemesisContext], None]:
    """kill -9 of two of the three ZooKeeper members for `seconds`, then restart them.

    Policy (checked by the scenario): without quorum nobody can confirm
    leadership, so the active node must stop accepting writes within the
    session timeout; service resumes once quorum is back.
    """

    def fault(ctx: NemesisContext) -> None:
        members = ctx.target.zk_members()
        leader = ctx.target.zk_leader()
        # Take the leader and one follower: the survivor can never form a quorum alone.
        victims = ([leader] if leader is not None else []) + [m for m in members if m != leader]
        victims = victims[:2]
        with ctx.fault("zk-quorum-loss", members=list(victims), seconds=seconds) as st:
            stopped: list[int] = []
            try:
                for m in victims:
                    ctx.target.zk_stop(m)
                    stopped.append(m)
                st.injected()
                ctx.sleep(seconds)
            finally:
                # Quorum may be back as soon as the first member serves again: the window ends here.
                ctx.history.record(PROCESS, Op.NEMESIS, {"fault": "zk-quorum-loss", "phase": "restoring"})
                for m in stopped:
                    ctx.target.zk_start(m)
        ctx.target.restore_nodes()
        ctx.target.wait_active(FAILOVER_TIMEOUT)

    return fault


def switchover(ctx: NemesisContext) -> None:
    """A planned switchover (`mailha switchover`) to the other node."""
    node = _active(ctx)
    with ctx.fault("switchover", node=node) as st:
        ctx.target.switchover()
        st.injected()
        if ctx.target.wait_active(FAILOVER_TIMEOUT, other_than=node) is None:
            raise NemesisError(f"switchover from {node}: no other node took over in {FAILOVER_TIMEOUT:.0f} s")


def kill_frontend_mid_big_append(min_bytes: int, wait: float = 30.0) -> Callable[[NemesisContext], None]:
    """kill -9 of imapd while an APPEND of at least `min_bytes` is in flight."""

    def fault(ctx: NemesisContext) -> None:
        node = _active(ctx)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not ctx.stop.is_set():
            if _open_big_append(ctx.history, min_bytes, min_age=0.2):
                break
            ctx.sleep(0.05)
        else:
            raise NemesisError(f"no APPEND of {min_bytes} bytes in flight within {wait:.0f} s")
        with ctx.fault("kill-imapd-mid-append", node=node) as st:
            pids = ctx.target.service_pids(node, "imapd")
            if not pids:
                raise NemesisError(f"no imapd on {node}")
            ctx.target.kill(pids, signal.SIGKILL)
            st.injected()
        ctx.target.wait_active(FAILOVER_TIMEOUT)

    return fault


def _open_big_append(history: HistoryWriter, min_bytes: int, min_age: float) -> bool:
    now = history.now()
    open_ops: dict[int, float] = {}
    for ev in history.events():
        if ev.f is not Op.APPEND:
            continue
        if ev.type is EventType.INVOKE:
            size = ev.int_("bytes") or 0
            if size >= min_bytes:
                open_ops[ev.op_id] = ev.time
        else:
            open_ops.pop(ev.op_id, None)
    return any(now - t >= min_age for t in open_ops.values())


READER_SCRIPT = """
import sys, time, lmdb
env = lmdb.open(sys.argv[1], readonly=True, lock=True, max_dbs=64, subdir=True)
txn = env.begin()
print("reading", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _lmdb_dir(root: pathlib.Path) -> pathlib.Path | None:
    for path in sorted(root.glob("**/data.mdb")):
        return path.parent
    return None


STALE_GRACE = 5.0  # seconds the store gets to reclaim a dead reader's slot


def stale_readers(env_dir: pathlib.Path) -> list[int]:
    """Pids in the LMDB reader table that no longer exist (their slots pin old snapshots)."""
    env = lmdb.open(str(env_dir), readonly=True, lock=True, max_dbs=64, subdir=True)
    try:
        table = env.readers()
    finally:
        env.close()
    pids = []
    for line in table.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0].isdigit() and not pathlib.Path(f"/proc/{fields[0]}").exists():
            pids.append(int(fields[0]))
    return sorted(set(pids))


def kill_reader(hold: float) -> Callable[[NemesisContext], None]:
    """kill -9 of a process holding an LMDB read transaction on the shared store.

    A killed reader leaves a stale slot in the lock file, pinning its snapshot
    (freed pages cannot be reused: the file grows). The store must reclaim it
    (LMDB reader_check); STALE_GRACE seconds after each kill the reader table
    is probed for dead pids (policy no_stale_readers).
    """

    def fault(ctx: NemesisContext) -> None:
        root = ctx.storage_path
        env_dir = _lmdb_dir(root) if root is not None else None
        if env_dir is None:
            raise NemesisError(f"no LMDB environment under {root}")
        with ctx.fault("kill-reader", path=str(env_dir)) as st:
            proc = subprocess.Popen(
                [sys.executable, "-c", READER_SCRIPT, str(env_dir), str(hold * 10)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            try:
                line = proc.stdout.readline() if proc.stdout is not None else b""
                if not line.startswith(b"reading"):
                    proc.kill()
                    err = proc.stderr.read() if proc.stderr is not None else b""
                    last = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                    raise NemesisError(f"the reader did not open a read transaction: {last[0][:200]}")
                st.injected()
                ctx.sleep(hold)
            finally:
                proc.kill()
                proc.wait(10)
                for stream in (proc.stdout, proc.stderr):
                    if stream is not None:
                        stream.close()
        ctx.sleep(STALE_GRACE)
        stale = stale_readers(env_dir)
        ctx.history.record(
            PROCESS,
            Op.NEMESIS,
            {"fault": "kill-reader", "phase": "probe", "stale_readers": len(stale), "pids": list(stale)},
        )

    return fault


# ---------------------------------------------------------------------------
# Last resort


def heal_everything(target: Target, node_names: list[str]) -> list[str]:
    """Undo every fault the nemesis can cause; return what could not be undone."""
    problems: list[str] = []
    for node in node_names:
        try:
            target.heal_partition(node)
        except Exception as exc:
            problems.append(f"heal partition of {node}: {exc}")
        try:
            target.kill(target.node_pids(node), signal.SIGCONT)
        except Exception as exc:
            problems.append(f"SIGCONT {node}: {exc}")
    for member in target.zk_members():
        try:
            target.zk_start(member)
        except Exception as exc:
            problems.append(f"start ZooKeeper member {member}: {exc}")
    try:
        target.restore_nodes()
    except Exception as exc:
        problems.append(f"restore nodes: {exc}")
    return problems
