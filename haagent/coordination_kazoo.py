"""Coordination on real ZooKeeper through kazoo.

Paths are prefixed with the configured chroot by hand (rather than with
kazoo's chroot suffix) so the chroot itself can be created with our ACL.
Every znode is created with a digest ACL for the cluster's credentials.

kazoo calls its listeners and watchers on its own threads; they only record
the state and call the waker, which hands the event to the trio loop without
blocking.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    BadVersionError,
    ConnectionLoss,
    KazooException,
    NodeExistsError,
    NoNodeError,
    RolledBackError,
    SessionExpiredError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.retry import KazooRetry
from kazoo.security import make_digest_acl

from haagent.coordination import (
    HISTORY_LIMIT,
    ClusterSnapshot,
    HistoryEntry,
    LastActive,
    LeaderRecord,
    NodeStatus,
    SessionInfo,
    SessionState,
    SwitchoverRequest,
    Waker,
    decode_history,
    decode_last_active,
    decode_leader,
    decode_status,
    decode_switchover,
    encode,
)
from haagent.errors import CoordinationUnavailable, LeadershipTaken, SwitchoverRejected
from nodeconf.config import ZooKeeperConfig

# Errors that mean "ZooKeeper cannot answer now", as opposed to a lost race.
_UNAVAILABLE = (ConnectionLoss, SessionExpiredError, KazooTimeoutError)


def make_client(zk: ZooKeeperConfig, hosts: str | None = None) -> KazooClient:
    """A kazoo client with digest auth and quick reconnects (not started)."""
    password = zk.auth_password()
    return KazooClient(
        hosts=hosts or zk.hosts,
        timeout=zk.session_timeout,
        auth_data=[("digest", f"{zk.auth_user}:{password}")],
        default_acl=[make_digest_acl(zk.auth_user, password, all=True)],
        connection_retry=KazooRetry(max_tries=-1, delay=0.05, backoff=1.5, max_delay=0.5),
        command_retry=KazooRetry(max_tries=0),
    )


class KazooCoordination:
    def __init__(self, client: KazooClient, chroot: str, *, request_timeout: float = 5.0) -> None:
        self.client = client
        self.base = chroot.rstrip("/")
        self.timeout = request_timeout
        self._state = SessionState.CONNECTED if client.connected else SessionState.SUSPENDED
        self._lock = threading.Lock()
        self._waker: Waker | None = None
        client.add_listener(self._on_state)

    # -- paths -------------------------------------------------------------------
    def p(self, name: str) -> str:
        return f"{self.base}/{name}"

    def ensure_layout(self) -> None:
        """Create the persistent znodes (idempotent)."""
        try:
            for name in ("nodes", "history"):
                self.client.ensure_path(self.p(name))
            try:
                self.client.create(self.p("epoch"), b"0")
            except NodeExistsError:
                pass
        except _UNAVAILABLE as exc:
            raise CoordinationUnavailable(str(exc)) from None

    # -- session -----------------------------------------------------------------
    def _on_state(self, state: str) -> None:
        # kazoo's thread: record and wake, never block.
        mapped = {
            KazooState.CONNECTED: SessionState.CONNECTED,
            KazooState.SUSPENDED: SessionState.SUSPENDED,
            KazooState.LOST: SessionState.LOST,
        }[state]
        with self._lock:
            self._state = mapped
            waker = self._waker
        if waker is not None:
            waker()

    def session(self) -> SessionInfo:
        with self._lock:
            state = self._state
        cid = self.client.client_id
        return SessionInfo(state, int(cid[0]) if cid else None)

    def set_waker(self, waker: Waker) -> None:
        with self._lock:
            self._waker = waker

        def on_change(*_args: Any) -> None:
            w = self._waker
            if w is not None:
                w()

        for name in ("leader", "switchover", "paused", "last_active"):
            self.client.DataWatch(self.p(name), on_change)

    # -- helpers -------------------------------------------------------------------
    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except _UNAVAILABLE as exc:
            raise CoordinationUnavailable(f"ZooKeeper unavailable: {exc.__class__.__name__}") from None

    def _get_optional(self, result: Any) -> bytes | None:
        try:
            data, _stat = result.get(timeout=self.timeout)
        except NoNodeError:
            return None
        return bytes(data)

    # -- reads ---------------------------------------------------------------------
    def snapshot(self) -> ClusterSnapshot:
        def read() -> ClusterSnapshot:
            c = self.client
            # Issue every read at once; ZooKeeper answers them in order.
            r_leader = c.get_async(self.p("leader"))
            r_epoch = c.get_async(self.p("epoch"))
            r_last = c.get_async(self.p("last_active"))
            r_switch = c.get_async(self.p("switchover"))
            r_paused = c.exists_async(self.p("paused"))
            r_nodes = c.get_children_async(self.p("nodes"))
            cid = c.client_id
            leader_data = self._get_optional(r_leader)
            epoch_data = self._get_optional(r_epoch)
            last_data = self._get_optional(r_last)
            switch_data = self._get_optional(r_switch)
            paused = r_paused.get(timeout=self.timeout) is not None
            try:
                names = sorted(r_nodes.get(timeout=self.timeout))
            except NoNodeError:
                names = []
            pending = [c.get_async(self.p(f"nodes/{n}")) for n in names]
            statuses = []
            for r in pending:
                data = self._get_optional(r)
                if data is not None:
                    statuses.append(decode_status(data))
            return ClusterSnapshot(
                my_session=int(cid[0]) if cid else -1,
                leader=decode_leader(leader_data) if leader_data else None,
                epoch_counter=int(epoch_data or b"0"),
                nodes=tuple(statuses),
                paused=paused,
                switchover=decode_switchover(switch_data) if switch_data else None,
                last_active=decode_last_active(last_data) if last_data else None,
            )

        result: ClusterSnapshot = self._call(read)
        return result

    def history(self) -> tuple[HistoryEntry, ...]:
        def read() -> tuple[HistoryEntry, ...]:
            names = sorted(self.client.get_children(self.p("history")))
            pending = [self.client.get_async(self.p(f"history/{n}")) for n in names]
            entries = []
            for r in pending:
                data = self._get_optional(r)
                if data is not None:
                    entries.append(decode_history(data))
            return tuple(entries)

        result: tuple[HistoryEntry, ...] = self._call(read)
        return result

    # -- writes --------------------------------------------------------------------
    def acquire(self, node: str, seen_counter: int) -> LeaderRecord:
        def run() -> LeaderRecord:
            data, stat = self.client.get(self.p("epoch"))
            if int(data or b"0") != seen_counter:
                raise LeadershipTaken(f"epoch counter moved from {seen_counter} to {int(data)}")
            cid = self.client.client_id
            if not cid:
                raise CoordinationUnavailable("no session")
            record = LeaderRecord(node=node, epoch=seen_counter + 1, session_id=int(cid[0]), since=time.time())
            tx = self.client.transaction()
            tx.set_data(self.p("epoch"), str(record.epoch).encode(), version=stat.version)
            tx.create(self.p("leader"), encode(record), ephemeral=True)
            results = tx.commit()
            failures = [r for r in results if isinstance(r, Exception) and not isinstance(r, RolledBackError)]
            if failures:
                if isinstance(failures[0], (NodeExistsError, BadVersionError)):
                    raise LeadershipTaken(f"lost the race: {failures[0].__class__.__name__}")
                raise CoordinationUnavailable(f"acquire failed: {failures[0]!r}")
            return record

        result: LeaderRecord = self._call(run)
        return result

    def _leader_version(self, leader: LeaderRecord) -> int | None:
        """The /leader version if the znode is ours and says `leader`, else None."""
        try:
            data, stat = self.client.get(self.p("leader"))
        except NoNodeError:
            return None
        cid = self.client.client_id
        if not cid or stat.ephemeralOwner != cid[0] or decode_leader(data) != leader:
            return None
        return int(stat.version)

    def release(self, leader: LeaderRecord, last_active: LastActive | None) -> None:
        def run() -> None:
            version = self._leader_version(leader)
            if version is None:
                return
            tx = self.client.transaction()
            tx.delete(self.p("leader"), version=version)
            if last_active is not None:
                self._put_in(tx, "last_active", encode(last_active))
            results = tx.commit()
            failures = [r for r in results if isinstance(r, Exception) and not isinstance(r, RolledBackError)]
            if failures and not isinstance(failures[0], (NoNodeError, BadVersionError)):
                raise CoordinationUnavailable(f"release failed: {failures[0]!r}")

        self._call(run)

    def _put_in(self, tx: Any, name: str, data: bytes) -> None:
        if self.client.exists(self.p(name)) is None:
            tx.create(self.p(name), data)
        else:
            tx.set_data(self.p(name), data)

    def set_last_active(self, leader: LeaderRecord, record: LastActive) -> None:
        def run() -> None:
            version = self._leader_version(leader)
            if version is None:
                raise LeadershipTaken("leader znode is no longer ours")
            tx = self.client.transaction()
            tx.check(self.p("leader"), version)
            self._put_in(tx, "last_active", encode(record))
            results = tx.commit()
            if any(isinstance(r, Exception) for r in results):
                raise LeadershipTaken(f"last_active not written: {results!r}")

        self._call(run)

    def publish_status(self, status: NodeStatus) -> None:
        def run() -> None:
            path = self.p(f"nodes/{status.name}")
            data = encode(status)
            try:
                self.client.set(path, data)
            except NoNodeError:
                try:
                    self.client.create(path, data, ephemeral=True)
                except NodeExistsError:
                    self.client.set(path, data)

        self._call(run)

    def set_paused(self, paused: bool) -> None:
        def run() -> None:
            if paused:
                try:
                    self.client.create(self.p("paused"), b"1")
                except NodeExistsError:
                    pass
            else:
                try:
                    self.client.delete(self.p("paused"))
                except NoNodeError:
                    pass

        self._call(run)

    def request_switchover(self, request: SwitchoverRequest) -> None:
        def run() -> None:
            try:
                self.client.create(self.p("switchover"), encode(request))
            except NodeExistsError:
                raise SwitchoverRejected("a switchover is already pending") from None

        self._call(run)

    def clear_switchover(self) -> None:
        def run() -> None:
            try:
                self.client.delete(self.p("switchover"))
            except NoNodeError:
                pass

        self._call(run)

    def append_history(self, entries: tuple[HistoryEntry, ...]) -> None:
        def run() -> None:
            for entry in entries:
                self.client.create(self.p("history/h-"), encode(entry), sequence=True)
            names = sorted(self.client.get_children(self.p("history")))
            for name in names[:-HISTORY_LIMIT]:
                try:
                    self.client.delete(self.p(f"history/{name}"))
                except NoNodeError:
                    pass

        self._call(run)

    def close(self) -> None:
        try:
            self.client.stop()
            self.client.close()
        except KazooException:
            pass


def connect(zk: ZooKeeperConfig, *, hosts: str | None = None, timeout: float = 10.0) -> KazooCoordination:
    """Start a client, wait for the session, create the layout."""
    client = make_client(zk, hosts)
    try:
        client.start(timeout=timeout)
    except KazooTimeoutError:
        client.close()
        raise CoordinationUnavailable(f"cannot reach ZooKeeper at {hosts or zk.hosts}") from None
    coord = KazooCoordination(client, zk.chroot)
    coord.ensure_layout()
    return coord
