"""Starting, health-checking and stopping the active node's services.

Children are started through `setpriv --pdeathsig KILL` (haagent/children.py),
from the trio thread (the death signal follows the thread that forked, and
this thread lives as long as the agent): if the agent dies, the kernel
SIGKILLs its store, imapd and lmtpd at once, so nothing keeps writing after the agent's
ZooKeeper session expires. The store additionally refuses writes whose
epoch is not the newest, so a survivor could not commit anything anyway.

Restart policy: a front end that exits is restarted (at most
MAX_RESTARTS within RESTART_WINDOW); the store likewise, with the same
`--fence EPOCH` (idempotent). Beyond that, or after FAILED_CHECKS failed
health checks in a row, health() reports FAILING and the decision loop
releases leadership.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import os
import pathlib
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc
import trio

from haagent.children import WarmPool, spawn
from haagent.decision import Health
from haagent.errors import ActionFailed
from mailha_api import store_pb2, store_pb2_grpc
from nodeconf import service_user, services
from nodeconf.config import ClusterConfig, NodeConfig
from nodeconf.paths import node_runtime_dir, store_address
from store.channel import open_channel
from store.layout import data_file

log = logging.getLogger("mailha.haagent.supervisor")

MAX_RESTARTS = 3
RESTART_WINDOW = 30.0
FAILED_CHECKS = 3
STORE_START_TIMEOUT = 15.0
FRONT_END_START_TIMEOUT = 15.0
DRAIN_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class FrontEndContext:
    cluster: ClusterConfig
    node: NodeConfig
    store: str  # gRPC address of this node's store
    epoch: int
    run_dir: pathlib.Path
    # The store's data directory (its LMDB environment and local write socket) in the shared
    # storage: a front end beside the store reads it and writes through its socket. Storage is
    # activated before any front end starts, and every front end has exited before the store
    # stops and the storage is deactivated (stop_all, and _stop_store reaps the exiting ones).
    store_data: pathlib.Path


@dataclass(frozen=True)
class FrontEnd:
    spec: services.ServiceSpec
    port: int  # where it greets once it serves
    greeting: bytes  # what a healthy greeting starts with


# A front end the agent starts after the store (None: the service is unavailable).
# The agent hands its list to the Supervisor (haagent.front_ends.FRONT_ENDS).
FrontEndFactory = Callable[[FrontEndContext], FrontEnd | None]


class Phase(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"  # front ends gone, store still up with writes suspended
    FAILING = "failing"


@dataclass
class _Child:
    name: str
    argv: tuple[str, ...]
    proc: subprocess.Popen[bytes]
    port: int | None = None
    greeting: bytes = b""
    restarts: list[float] = field(default_factory=list)


def store_epoch(address: str, timeout: float = 1.0) -> tuple[int, bool]:
    """(stored epoch, writable) from the store's GetEpoch."""
    with open_channel(address) as channel:
        reply = store_pb2_grpc.MailStoreStub(channel).GetEpoch(store_pb2.GetEpochRequest(), timeout=timeout)
    return int(reply.epoch), bool(reply.writable)


def fence_store(address: str, epoch: int, timeout: float = 2.0) -> None:
    """Raise the store's epoch to `epoch` (the previous writer is refused from
    this commit on), then let it write."""
    with open_channel(address) as channel:
        stub = store_pb2_grpc.MailStoreStub(channel)
        reply = stub.Fence(store_pb2.FenceRequest(epoch=epoch), timeout=timeout)
        if reply.epoch != epoch:
            raise ActionFailed(f"store is at epoch {reply.epoch} after Fence({epoch})")
        stub.SetWritable(store_pb2.SetWritableRequest(epoch=epoch, writable=True), timeout=timeout)


def set_writable(address: str, epoch: int, writable: bool, timeout: float = 0.5) -> None:
    with open_channel(address) as channel:
        store_pb2_grpc.MailStoreStub(channel).SetWritable(
            store_pb2.SetWritableRequest(epoch=epoch, writable=writable), timeout=timeout
        )


def accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


TCP_LISTEN = "0A"


def listening(host: ipaddress.IPv4Address, port: int, table: str = "/proc/net/tcp") -> bool:
    """True if a socket of this network namespace listens on host:port (read
    from the kernel's table: a connection to an address that is not local yet
    would leave the node)."""
    want = f"{socket.htonl(int(host)):08X}:{port:04X}"
    with open(table) as f:
        next(f, None)
        for line in f:
            fields = line.split()
            if len(fields) > 3 and fields[1] == want and fields[3] == TCP_LISTEN:
                return True
    return False


def greets(host: str, port: int, prefix: bytes, timeout: float = 1.0) -> bool:
    """True if a TCP connection to host:port greets with `prefix`."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            data = b""
            deadline = time.monotonic() + timeout
            while b"\n" not in data and time.monotonic() < deadline:
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
            return data.startswith(prefix)
    except OSError:
        return False


class Supervisor:
    """The node's service processes. It holds no epoch of its own: the decision
    loop owns it and passes it to start, stop_writes, resume_writes and check_once."""

    def __init__(
        self,
        cluster: ClusterConfig,
        node: str,
        storage_dir: pathlib.Path,
        front_ends: Sequence[FrontEndFactory],
    ) -> None:
        self.cluster = cluster
        self.front_ends = tuple(front_ends)  # started after the store, in this order
        self.node = cluster.node(node)
        self.storage_dir = storage_dir
        self.run_dir = node_runtime_dir(cluster, node)
        self.log_dir = self.run_dir / "log"
        self.address = store_address(cluster, node)
        self.children: dict[str, _Child] = {}
        self.phase = Phase.STOPPED
        self.failed_checks = 0
        self.detail = ""
        # Start, stop and the periodic check never interleave (a check must
        # not restart a child that stop_all is stopping). stop_writes takes
        # no lock: it must be fast even while a check waits on a greeting.
        self.lock = trio.Lock()
        # Store, imapd and lmtpd run as this account when the agent is root (None: as the agent).
        self.user = service_user.resolve(cluster.service_user)
        self.warm = WarmPool(self.log_dir, self.user)
        self._names: list[str] | None = None
        self._exiting: list[_Child] = []  # front ends that stopped serving but have not exited yet

    # -- health -----------------------------------------------------------------
    def health(self) -> Health:
        if self.phase is Phase.STOPPED:
            # A standby is ready to take over once its warm processes are.
            return Health.OK if self.warm.ready(self._service_names()) else Health.STARTING
        return {
            Phase.STOPPED: Health.STOPPED,
            Phase.STARTING: Health.STARTING,
            Phase.RUNNING: Health.OK,
            Phase.STOPPING: Health.STOPPED,
            Phase.FAILING: Health.FAILING,
        }[self.phase]

    def _fail(self, why: str) -> None:
        if self.phase is not Phase.FAILING:
            log.error("services failing: %s", why)
        self.phase = Phase.FAILING
        self.detail = why

    # -- start ------------------------------------------------------------------
    def _store_argv(self, epoch: int | None) -> tuple[str, ...]:
        """With `epoch`: fence to it at start; without: no fence, writes suspended."""
        return services.store_service(
            self.storage_dir,
            self.address,
            max_message_size=self.cluster.store.max_message_size,
            default_quota=self.cluster.store.default_quota,
            fence=epoch,
            writable=epoch is not None,
        ).argv

    async def start(self, epoch: int, claim: Callable[[], Awaitable[None]], *, early_front_ends: bool) -> None:
        """Start the store and the front ends and fence the previous writer
        at EPOCH; `claim` (the floating IP) runs once the store serves. With
        `early_front_ends` (ip_nonlocal_bind is on) the front ends start with
        the store and listen on the floating IP before it arrives, so a
        client that reaches the new holder finds them (nearly) ready; they
        cannot be reached before `claim`, and the store refuses every write
        from an older epoch anyway."""
        async with self.lock:
            pending: list[_Child] = []
            if early_front_ends:
                # Everything slow before the address moves: front ends
                # listen, the store starts with writes suspended and no fence
                # (it serves reads, commits nothing). Then the address, so
                # clients reconnect here at once, and, while they set up
                # their sessions (TLS, LOGIN, SELECT are reads), one Fence +
                # SetWritable: no write is accepted here before the fence.
                self.phase = Phase.STARTING
                self._prepare_dirs()
                pending = self._launch_front_ends(epoch)
                # With an environment there, the store starts while the front ends do (a
                # takeover: the two starts were one after the other, 30-160 ms of a kill's
                # outage); without one (a first activation) only after they listen, so imapd
                # never races the store's creation of it and is started again (_relaunch).
                overlap = self._environment_exists()
                if overlap:
                    self._launch_store(epoch, fence_at_start=False)
                exited = await self._wait_listening(pending)
                if not overlap:
                    self._launch_store(epoch, fence_at_start=False)
                await self._wait_store(epoch, exact=False)
                self._relaunch(exited)
                await claim()
                try:
                    await trio.to_thread.run_sync(fence_store, self.address, epoch)
                except grpc.RpcError as exc:
                    raise ActionFailed(f"store refused Fence({epoch}): {exc.code()}: {exc.details()}") from None
            else:
                self._launch_store(epoch)
                await self._wait_store(epoch)
                await claim()
            if not early_front_ends:
                pending = self._launch_front_ends(epoch)
            await self._wait_front_ends(pending)

    def _environment_exists(self) -> bool:
        """True when the store's LMDB environment is in the storage."""
        return data_file(self.storage_dir).exists()

    def _prepare_dirs(self) -> None:
        """What the service user needs before any service starts (front ends may start first)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o700)  # as `cluster up` made it: the store socket is in there
        if self.user is not None:
            # The store makes its socket in run_dir and writes the shared storage; imapd reads
            # the demo certificate under runtime_dir; the logs in run_dir/log stay the agent's
            # (opened without following links).
            os.chown(self.run_dir, self.user.uid, self.user.gid)
            self.user.let_through(self.run_dir.parent)
            self.user.let_through(self.storage_dir.parent)
            self.user.own(self.storage_dir)

    def _launch_store(self, epoch: int, *, fence_at_start: bool = True) -> None:
        self.phase = Phase.STARTING
        self._prepare_dirs()
        sock = pathlib.Path(self.address.removeprefix("unix:"))
        sock.unlink(missing_ok=True)
        argv = self._store_argv(epoch)  # what a restart runs: --fence EPOCH (idempotent)
        first = argv if fence_at_start else self._store_argv(None)
        self.children["store"] = _Child("store", argv, self.warm.launch("store", first))

    async def _wait_store(self, epoch: int, *, exact: bool = True) -> None:
        """Until the store answers: with `exact`, at `epoch`; else at any
        epoch up to `epoch` (it is fenced next)."""
        child = self.children["store"]
        with trio.move_on_after(STORE_START_TIMEOUT):
            while True:
                if child.proc.poll() is not None:
                    raise ActionFailed(f"store exited with {child.proc.returncode} while starting")
                try:
                    stored, _writable = await trio.to_thread.run_sync(store_epoch, self.address, 0.5)
                except grpc.RpcError:
                    await trio.sleep(0.01)
                    continue
                if stored > epoch or (exact and stored != epoch):
                    raise ActionFailed(f"store serves epoch {stored}, not {epoch}: fenced by a newer writer")
                return
        raise ActionFailed(f"store did not serve within {STORE_START_TIMEOUT:.0f} s")

    def _launch_front_ends(self, epoch: int) -> list[_Child]:
        ctx = FrontEndContext(self.cluster, self.node, self.address, epoch, self.run_dir, self.storage_dir)
        pending: list[_Child] = []
        for factory in self.front_ends:
            fe = factory(ctx)
            if fe is None:
                continue
            child = _Child(fe.spec.name, fe.spec.argv, self.warm.launch(fe.spec.name, fe.spec.argv))
            child.port, child.greeting = fe.port, fe.greeting
            self.children[fe.spec.name] = child
            pending.append(child)
        return pending

    async def _wait_listening(self, pending: list[_Child]) -> list[_Child]:
        """Until each front end started before the store listens; those that exit instead
        are returned, to start again once the store serves (_relaunch)."""
        host = self.cluster.floating_ip.address.ip
        exited: list[_Child] = []
        with trio.move_on_after(FRONT_END_START_TIMEOUT):
            for child in pending:
                while child.port is not None and not await trio.to_thread.run_sync(listening, host, child.port):
                    if child.proc.poll() is not None:
                        exited.append(child)
                        break
                    await trio.sleep(0.01)
            return exited
        raise ActionFailed(f"front ends did not listen within {FRONT_END_START_TIMEOUT:.0f} s")

    def _relaunch(self, exited: list[_Child]) -> None:
        """Start again, now that the store serves, the front ends that exited when started
        before it: imapd opens the store's environment at start, and it is not there yet on a
        first activation (the store creates it), nor complete after an upgrade that adds a
        table (the store adds it when it opens the environment). Once; a second exit fails
        the start as usual (_wait_front_ends)."""
        for child in exited:
            log.warning(
                "%s exited with %s before the store served (see its log); starting it again",
                child.name,
                child.proc.returncode,
            )
            child.proc = spawn(child.name, child.argv, self.log_dir, user=self.user)

    async def _wait_front_ends(self, pending: list[_Child]) -> None:
        with trio.move_on_after(FRONT_END_START_TIMEOUT):
            for child in pending:
                while not await self._greets(child):
                    if child.proc.poll() is not None:
                        raise ActionFailed(f"{child.name} exited with {child.proc.returncode} while starting")
                    await trio.sleep(0.01)
            self.phase = Phase.RUNNING
            self.failed_checks = 0
            return
        raise ActionFailed(f"front ends did not greet within {FRONT_END_START_TIMEOUT:.0f} s")

    async def _greets(self, child: _Child) -> bool:
        if child.port is None:
            return True
        host = str(self.cluster.floating_ip.address.ip)
        return await trio.to_thread.run_sync(greets, host, child.port, child.greeting, 0.5)

    def prewarm(self) -> None:
        """Keep a warm process per service while this node is not serving."""
        if self.phase is not Phase.STOPPED:
            return
        self.warm.fill(self._service_names())

    def _service_names(self) -> list[str]:
        if self._names is None:
            ctx = FrontEndContext(self.cluster, self.node, self.address, 0, self.run_dir, self.storage_dir)
            self._names = ["store"] + [fe.spec.name for fe in (f(ctx) for f in self.front_ends) if fe is not None]
        return self._names

    # -- writes -----------------------------------------------------------------
    async def stop_writes(self, epoch: int) -> None:
        """Make the store (running under `epoch`) refuse writes now; if it does not answer, kill it."""
        store = self.children.get("store")
        if store is None or store.proc.poll() is not None:
            return
        try:
            await trio.to_thread.run_sync(set_writable, self.address, epoch, False, 0.3)
        except grpc.RpcError as exc:
            log.warning("store did not accept SetWritable(false) (%s); killing it", exc.code())
            store.proc.kill()

    async def resume_writes(self, epoch: int) -> None:
        store = self.children.get("store")
        if store is None or store.proc.poll() is not None:
            raise ActionFailed("store is gone; cannot resume writes")
        try:
            await trio.to_thread.run_sync(set_writable, self.address, epoch, True, 1.0)
        except grpc.RpcError as exc:
            raise ActionFailed(f"store refused SetWritable(true): {exc.code()}") from None

    def hand_over(self) -> None:
        """Leadership is going: no health checks or restarts from now on
        (the new writer will fence this store, which is not a failure)."""
        self.phase = Phase.STOPPING

    async def wait_fenced(self, epoch: int, timeout: float) -> bool:
        """True once the store reports a newer epoch than `epoch` (a new writer
        fenced it), False after `timeout` or if the store is gone."""
        store = self.children.get("store")
        with trio.move_on_after(timeout):
            while store is not None and store.proc.poll() is None:
                try:
                    stored, _writable = await trio.to_thread.run_sync(store_epoch, self.address, 0.5)
                except grpc.RpcError:
                    stored = epoch
                if stored > epoch:
                    return True
                await trio.sleep(0.01)
        return False

    # -- stop -------------------------------------------------------------------
    async def stop_all(self, drain: bool) -> None:
        """Front ends first (SIGTERM: imapd says BYE [UNAVAILABLE]), then the store."""
        async with self.lock:
            await self._stop_front_ends(drain)
            await self._stop_store()

    async def stop_front_ends(self, drain: bool) -> None:
        """Stop the front ends only; the store keeps running (writes are the
        caller's business). Health checks pause until stop_store."""
        async with self.lock:
            await self._stop_front_ends(drain)
            self.phase = Phase.STOPPING

    async def stop_store(self) -> None:
        async with self.lock:
            await self._stop_store()

    async def _stop_front_ends(self, drain: bool) -> None:
        front = [c for name, c in self.children.items() if name != "store"]
        for child in front:
            self._signal(child, signal.SIGTERM if drain else signal.SIGKILL)
        if drain:
            # A draining front end closes its listener only after it has said
            # BYE [UNAVAILABLE] to every client (imapd) or cancelled its
            # sessions (lmtpd); its interpreter teardown (gRPC threads) can take
            # a second more, which the hand-over need not wait for.
            await self._wait_stopped_listening(front, DRAIN_TIMEOUT)
        else:
            await self._reap(front, DRAIN_TIMEOUT)
        for child in front:
            del self.children[child.name]
            if child.proc.poll() is None:
                self._exiting.append(child)

    async def _wait_stopped_listening(self, children: list[_Child], timeout: float) -> None:
        host = str(self.cluster.floating_ip.address.ip)
        with trio.move_on_after(timeout):
            for child in children:
                while child.proc.poll() is None:
                    if child.port is not None and not await trio.to_thread.run_sync(accepts, host, child.port):
                        break
                    await trio.sleep(0.01)
            return
        log.warning("front ends still listening after %.0f s of draining; killing them", timeout)
        for child in children:
            self._signal(child, signal.SIGKILL)

    async def _stop_store(self) -> None:
        await self._reap(self._exiting, STOP_TIMEOUT)
        self._exiting.clear()
        store = self.children.pop("store", None)
        if store is not None:
            self._signal(store, signal.SIGTERM)
            await self._reap([store], STOP_TIMEOUT)
        self.children.clear()
        self.phase = Phase.STOPPED

    @staticmethod
    def _signal(child: _Child, sig: signal.Signals) -> None:
        if child.proc.poll() is None:
            try:
                child.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    async def _reap(self, children: list[_Child], timeout: float) -> None:
        deadline = trio.current_time() + timeout
        for child in children:
            while child.proc.poll() is None and trio.current_time() < deadline:
                await trio.sleep(0.01)
            if child.proc.poll() is None:
                log.warning("%s ignored SIGTERM for %.0f s; killing it", child.name, timeout)
                child.proc.kill()
                child.proc.wait()

    # -- monitoring -------------------------------------------------------------
    async def check_once(self, epoch: int) -> None:
        """One round of health checks and restarts (RUNNING phase only) of
        services started under `epoch`."""
        async with self.lock:
            await self._check_once(epoch)

    async def _check_once(self, epoch: int) -> None:
        if self.phase is not Phase.RUNNING:
            return
        now = time.monotonic()
        for name, child in list(self.children.items()):
            if child.proc.poll() is None:
                continue
            child.restarts = [t for t in child.restarts if now - t < RESTART_WINDOW]
            if len(child.restarts) >= MAX_RESTARTS:
                self._fail(f"{name} exited {MAX_RESTARTS} times within {RESTART_WINDOW:.0f} s")
                return
            log.warning("%s exited with %s; restarting it", name, child.proc.returncode)
            child.restarts.append(now)
            child.proc = spawn(name, child.argv, self.log_dir, user=self.user)
            if name == "store":
                try:
                    await self._wait_store(epoch)
                except ActionFailed as exc:
                    self._fail(str(exc))
                    return
        ok = await self._healthy(epoch)
        self.failed_checks = 0 if ok else self.failed_checks + 1
        if self.failed_checks >= FAILED_CHECKS:
            self._fail(f"{FAILED_CHECKS} health checks failed in a row: {self.detail}")

    async def _healthy(self, epoch: int) -> bool:
        try:
            stored, _writable = await trio.to_thread.run_sync(store_epoch, self.address, 1.0)
        except grpc.RpcError as exc:
            self.detail = f"store health: {exc.code()}"
            return False
        if stored != epoch:
            # A newer writer fenced this store: never recovers by itself.
            self._fail(f"store fenced: stored epoch {stored}, mine {epoch}")
            return False
        for child in self.children.values():
            if child.port is not None and not await self._greets(child):
                self.detail = f"{child.name} did not greet on port {child.port}"
                return False
        return True
