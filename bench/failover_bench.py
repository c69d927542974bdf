"""`mailha bench failover`: kill and switchover trials against a running
cluster (`mailha cluster up`), under a steady client load through the
floating IP.

Kill trial: SIGKILL every process of the active node's namespace; the time
from the kill to the first successful IMAP LOGIN+SELECT on the floating IP
(implicit TLS on the IMAPS port; the demo certificate is self-signed, so it
is not verified). The killed node's agent is then restarted with its
exact former command line and the next trial waits for it to stand by.
Switchover trial: `mailha switchover`; its measured unavailability.

Load, and the client-visible figures: one plain imaplib client (port 143,
STARTTLS, LOGIN, SELECT) appends numbered messages through the floating IP
every 20 ms; after any error it reconnects at once, then every 50 ms, with
the standard library's connect (a SYN that goes nowhere waits for TCP's
retransmission, as a real client's would). Its outage for a trial is first
error -> next acknowledged APPEND (`client_*` keys), next to the agent's
figures, with the steps of the session that ended it (`client_steps_ms`:
TCP connect, greeting, CAPABILITY, STARTTLS, LOGIN, SELECT, the APPEND; and
`before`, from the first error to the start of that session), beside the same
steps of a few sessions set up before the trials, with nothing failing over
(`client_steady_steps_median_ms`). At the end
every acknowledged message must be in the store (`lost_acked` counts those
missing).
"""

from __future__ import annotations

import functools
import imaplib
import json
import math
import os
import pathlib
import signal
import socket
import ssl
import statistics
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field

import grpc

from bench.client_outage import Outage, OutageTracker, Steps, longest_in
from haagent import netns
from haagent.agent import connect_coordination
from haagent.coordination import Coordination
from haagent.errors import HaAgentError
from haagent.operator import switchover
from mailha_api import store_pb2, store_pb2_grpc
from nodeconf.config import ClusterConfig
from nodeconf.paths import store_address
from store.channel import open_channel

BENCH_USER = "failbench"
# The trials' own LOGIN+SELECT probe logs in as another user: the new node remembers a
# verified login per login name, so a probe as BENCH_USER would pay the password hash the
# load client's first LOGIN after the takeover must pay, and hide it from the client's outage.
PROBE_USER = "failprobe"
BENCH_DOMAIN = "mailha.test"
TRIAL_TIMEOUT = 30.0
STANDBY_TIMEOUT = 60.0


@dataclass
class LoadStats:
    acked: list[str] = field(default_factory=list)  # Message-IDs of APPENDs answered OK
    errors: int = 0
    outages: OutageTracker = field(default_factory=OutageTracker)


@functools.cache
def _tls() -> ssl.SSLContext:
    """One client context for every connection, as a mail client keeps one: making it loads
    the system's CA bundle (22-77 ms on the 2-core machine), which counted as STARTTLS in
    each reconnect's steps, and as outage, when every connection made its own."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the demo certificate is self-signed
    return ctx


def _message(msgid: str) -> bytes:
    return (
        f"From: bench@{BENCH_DOMAIN}\r\nTo: {BENCH_USER}@{BENCH_DOMAIN}\r\nSubject: failover bench\r\n"
        f"Message-ID: <{msgid}>\r\n\r\nfailover bench message\r\n"
    ).encode()


CONNECT_TIMEOUT = 0.2


class _QuickConnectIMAP4_SSL(imaplib.IMAP4_SSL):
    """Gives up a connect after CONNECT_TIMEOUT: a SYN sent while the floating
    IP moves is lost and would otherwise wait for TCP's 1 s retransmission;
    a client polling for the service retries instead."""

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), CONNECT_TIMEOUT)
        sock.settimeout(timeout)
        wrapped: socket.socket = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
        return wrapped


class _StepClock:
    """When each step of a session setup ended (monotonic), in order."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.marks: list[tuple[str, float]] = []

    def mark(self, step: str) -> None:
        self.marks.append((step, time.monotonic()))

    def steps(self) -> Steps:
        out, last = [], self.start
        for step, t in self.marks:
            out.append((step, t - last))
            last = t
        return tuple(out)


class _TimedIMAP4(imaplib.IMAP4):
    """imaplib.IMAP4 that marks the end of the TCP connect, of the greeting and of the
    first CAPABILITY (all three happen inside the constructor)."""

    def __init__(self, host: str, port: int, timeout: float, clock: _StepClock) -> None:
        self._clock: _StepClock | None = clock
        super().__init__(host, port, timeout=timeout)

    def open(self, host: str = "", port: int = 143, timeout: float | None = None) -> None:
        super().open(host, port, timeout)
        if self._clock is not None:
            self._clock.mark("tcp")

    def _get_capabilities(self) -> None:
        clock, self._clock = self._clock, None  # STARTTLS asks again: not part of the connect
        if clock is not None:
            clock.mark("greeting")
        super()._get_capabilities()  # type: ignore[misc]
        if clock is not None:
            clock.mark("capability")


class Imap:
    """A logged-in IMAP session on the floating IP, or an OSError/IMAP error;
    `clock` says when each setup step ended."""

    def __init__(self, cluster: ClusterConfig, password: str, timeout: float = 2.0, user: str = BENCH_USER) -> None:
        self.clock = _StepClock()
        self.conn = self._connect(cluster, timeout)
        try:
            self.conn.login(user, password)
            self.clock.mark("login")
            typ, _ = self.conn.select("INBOX")
            if typ != "OK":
                raise imaplib.IMAP4.error("SELECT failed")
            self.clock.mark("select")
        except BaseException:
            self.close()
            raise

    def append(self, msgid: str) -> bool:
        typ, _ = self.conn.append("INBOX", None, None, _message(msgid))
        return typ == "OK"

    def close(self) -> None:
        try:
            self.conn.shutdown()
        except OSError:
            pass

    def _connect(self, cluster: ClusterConfig, timeout: float) -> imaplib.IMAP4:
        host = str(cluster.floating_ip.address.ip)
        return _QuickConnectIMAP4_SSL(host, cluster.ports.imaps, ssl_context=_tls(), timeout=timeout)


IMAP_ERRORS = (OSError, imaplib.IMAP4.error, imaplib.IMAP4.abort, ssl.SSLError, EOFError)

CLIENT_TIMEOUT = 5.0  # a command (or connect) that takes longer counts as an error
RECONNECT_INTERVAL = 0.05


class StarttlsImap(Imap):
    """What a plain client does: imaplib.IMAP4 on the IMAP port (the standard
    connect, no shortened timeout), STARTTLS, LOGIN, SELECT INBOX."""

    def __init__(self, cluster: ClusterConfig, password: str) -> None:
        super().__init__(cluster, password, CLIENT_TIMEOUT)

    def _connect(self, cluster: ClusterConfig, timeout: float) -> imaplib.IMAP4:
        conn = _TimedIMAP4(str(cluster.floating_ip.address.ip), cluster.ports.imap, timeout, self.clock)
        try:
            conn.starttls(_tls())
            self.clock.mark("starttls")
        except BaseException:
            conn.shutdown()
            raise
        return conn


def service_ok(cluster: ClusterConfig, password: str) -> bool:
    """One end-to-end check on the floating IP: LOGIN + SELECT INBOX, as PROBE_USER."""
    try:
        Imap(cluster, password, timeout=1.0, user=PROBE_USER).close()
        return True
    except IMAP_ERRORS:
        return False


class Load:
    def __init__(self, cluster: ClusterConfig, password: str, interval: float = 0.02) -> None:
        self.cluster = cluster
        self.password = password
        self.interval = interval
        self.stats = LoadStats()
        self.tag = uuid.uuid4().hex[:8]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        session: StarttlsImap | None = None
        failures = 0  # in a row: the first reconnect is immediate, then every 50 ms
        while not self._stop.is_set():
            try:
                fresh = session is None
                if session is None:
                    session = StarttlsImap(self.cluster, self.password)
                n += 1
                msgid = f"{self.tag}-{n}@bench"
                if session.append(msgid):
                    self.stats.acked.append(msgid)
                    if fresh:
                        session.clock.mark("append")
                        clock = session.clock
                        self.stats.outages.ok(clock.marks[-1][1], session_start=clock.start, steps=clock.steps())
                    else:
                        self.stats.outages.ok(time.monotonic())
                    failures = 0
                else:
                    raise imaplib.IMAP4.error("APPEND refused")
            except IMAP_ERRORS:
                self.stats.outages.error(time.monotonic())
                self.stats.errors += 1
                failures += 1
                if session is not None:
                    session.close()
                session = None
                if failures > 1:
                    self._stop.wait(RECONNECT_INTERVAL)
                continue
            self._stop.wait(self.interval)
        if session is not None:
            session.close()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


STEADY_SESSIONS = 5


def steady_session_steps(cluster: ClusterConfig, password: str, sessions: int = STEADY_SESSIONS) -> dict[str, float]:
    """What the load's session setup costs with nothing failing over: per step, the median
    of `sessions` fresh sessions (STARTTLS, LOGIN, SELECT, one APPEND) in ms. The reference
    for the steps of the session that ends an outage."""
    per_step: dict[str, list[float]] = {}
    for n in range(sessions):
        session = StarttlsImap(cluster, password)
        try:
            if not session.append(f"steady-{n}-{uuid.uuid4().hex[:8]}@bench"):
                raise HaAgentError("bench: APPEND refused before the trials")
            session.clock.mark("append")
        finally:
            session.close()
        for step, seconds in session.clock.steps():
            per_step.setdefault(step, []).append(seconds * 1000)
    return {step: round(statistics.median(v), 1) for step, v in per_step.items()}


def _active(coord: Coordination) -> tuple[str, int] | None:
    snap = coord.snapshot()
    if snap.leader is None:
        return None
    st = snap.node_status(snap.leader.node)
    if st is None or st.state != "active" or st.health != "ok":
        return None
    return snap.leader.node, snap.leader.epoch


def _wait(what: str, cond: object, timeout: float) -> float:
    assert callable(cond)
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise HaAgentError(f"bench: timed out waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - t0


def _ensure_user(cluster: ClusterConfig, node: str, epoch: int, password: str) -> None:
    """The load client's user and the probe's, both with `password` and an address."""
    with open_channel(store_address(cluster, node)) as channel:
        stub = store_pb2_grpc.MailStoreStub(channel)
        for name in (BENCH_USER, PROBE_USER):
            try:
                stub.CreateUser(store_pb2.CreateUserRequest(epoch=epoch, name=name, password=password))
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
                stub.SetPassword(store_pb2.SetPasswordRequest(epoch=epoch, name=name, password=password))
            try:
                stub.AddAddress(store_pb2.AddAddressRequest(epoch=epoch, address=f"{name}@{BENCH_DOMAIN}", user=name))
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise


def stored_message_ids(cluster: ClusterConfig, node: str) -> set[str]:
    with open_channel(store_address(cluster, node)) as channel:
        stub = store_pb2_grpc.MailStoreStub(channel)
        sel = stub.Select(store_pb2.SelectRequest(user=BENCH_USER, name="INBOX"), timeout=10)
        if not sel.uids:
            return set()
        found: set[str] = set()
        request = store_pb2.FetchRequest(
            user=BENCH_USER, mailbox_id=sel.mailbox.mailbox_id, uid_set="1:*", with_header=True
        )
        for item in stub.Fetch(request, timeout=60):
            if item.HasField("meta"):
                for line in item.meta.header.decode(errors="replace").splitlines():
                    if line.lower().startswith("message-id:"):
                        found.add(line.split(":", 1)[1].strip().strip("<>"))
        return found


def _agent_cmdlines(namespace: str) -> list[tuple[list[str], str]]:
    """(argv, cwd) of every agent process in the namespace."""
    out = []
    for pid in netns.pids_in_netns(namespace):
        try:
            argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        args = [a.decode() for a in argv if a]
        if "agent" in args and "--node" in args and "netns" not in args:
            out.append((args, cwd))
    return out


def kill_trial(cluster: ClusterConfig, coord: Coordination, password: str) -> dict[str, object]:
    active = _active(coord)
    assert active is not None
    node, epoch = active
    namespace = cluster.node(node).namespace
    restart = _agent_cmdlines(namespace)
    pids = netns.pids_in_netns(namespace)
    t0 = time.monotonic()
    window_start = t0
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # Every process of the old node is dead, so the first LOGIN+SELECT that
    # works is served by the new active.
    _wait("LOGIN+SELECT on the floating IP", lambda: service_ok(cluster, password), TRIAL_TIMEOUT)
    elapsed = time.monotonic() - t0
    _wait("a new active", lambda: (a := _active(coord)) is not None and a[0] != node, TRIAL_TIMEOUT)
    new = _active(coord)
    # Bring the killed node back as a standby for the next trial.
    log_dir = cluster.runtime_dir / node
    log_dir.mkdir(parents=True, exist_ok=True)
    for argv, cwd in restart:
        with open(log_dir / "agent.log", "ab") as out:
            netns.popen_in_netns(namespace, argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
    if restart:
        _wait(
            f"{node} standing by again",
            lambda: (
                (st := coord.snapshot().node_status(node)) is not None and (st.state, st.health) == ("standby", "ok")
            ),
            STANDBY_TIMEOUT,
        )
    return {
        "kind": "kill",
        "killed": node,
        "killed_processes": len(pids),
        "old_epoch": epoch,
        "new_active": new[0] if new else None,
        "new_epoch": new[1] if new else None,
        "kill_to_service_s": round(elapsed, 3),
        "window": (window_start, t0 + elapsed),
    }


def switchover_trial(cluster: ClusterConfig, coord: Coordination, zk_hosts: str | None) -> dict[str, object]:
    window_start = time.monotonic()
    result = switchover(cluster, None, hosts=zk_hosts, timeout=TRIAL_TIMEOUT)
    window_end = time.monotonic()
    _wait(
        f"{result.source} standing by",
        lambda: (
            (st := coord.snapshot().node_status(result.source)) is not None
            and (st.state, st.health) == ("standby", "ok")
        ),
        STANDBY_TIMEOUT,
    )
    return {
        "kind": "switchover",
        "from": result.source,
        "to": result.target,
        "new_epoch": result.epoch,
        "unavailable_s": None if math.isnan(result.unavailable_s) else round(result.unavailable_s, 3),
        "took_s": round(result.took_s, 3),
        "window": (window_start, window_end),
    }


def run_bench(
    cluster: ClusterConfig,
    *,
    trials: int,
    switchovers: int,
    as_json: bool,
    out: pathlib.Path,
    zk_hosts: str | None = None,
) -> int:
    coord = connect_coordination(cluster, hosts=zk_hosts, deadline=time.monotonic() + 15)
    try:
        _wait("an active node", lambda: _active(coord) is not None, TRIAL_TIMEOUT)
        active = _active(coord)
        assert active is not None
        password = uuid.uuid4().hex
        _ensure_user(cluster, *active, password)
        _wait("LOGIN+SELECT on the floating IP", lambda: service_ok(cluster, password), TRIAL_TIMEOUT)
        steady = steady_session_steps(cluster, password)
        load = Load(cluster, password)
        load.start()
        results: list[dict[str, object]] = []
        try:
            time.sleep(0.5)
            for i in range(max(trials, switchovers)):
                if i < trials:
                    results.append(kill_trial(cluster, coord, password))
                    _report(results[-1], as_json)
                if i < switchovers:
                    results.append(switchover_trial(cluster, coord, zk_hosts))
                    _report(results[-1], as_json)
            time.sleep(0.5)
        finally:
            load.stop()
        final = _active(coord)
        assert final is not None
        stored = stored_message_ids(cluster, final[0])
        lost = [m for m in load.stats.acked if m not in stored]
    finally:
        coord.close()
    kills = [float(str(r["kill_to_service_s"])) for r in results if r["kind"] == "kill"]
    gaps = [float(str(r["unavailable_s"])) for r in results if r["kind"] == "switchover" and r["unavailable_s"]]
    outages = load.stats.outages.outages
    for r in results:
        window = r.pop("window")
        assert isinstance(window, tuple)
        found = longest_in(outages, *window)
        r["client_outage_s"] = 0.0 if found is None else round(found.seconds, 3)
        if found is not None:
            r["client_errors"] = found.errors
            r["client_steps_ms"] = _steps_ms(found)
    client_kills = [float(str(r["client_outage_s"])) for r in results if r["kind"] == "kill"]
    client_switch = [float(str(r["client_outage_s"])) for r in results if r["kind"] == "switchover"]
    summary: dict[str, object] = {
        "bench": "failover",
        "session_timeout_s": cluster.zookeeper.session_timeout,
        "service_check": "IMAP LOGIN+SELECT (IMAPS) on the floating IP",
        "load": "IMAP APPEND (STARTTLS) every 20 ms through the floating IP",
        "kill_trials": len(kills),
        "kill_median_s": round(statistics.median(kills), 3) if kills else None,
        "kill_max_s": round(max(kills), 3) if kills else None,
        "switchover_trials": len(gaps),
        "switchover_median_s": round(statistics.median(gaps), 3) if gaps else None,
        "switchover_max_s": round(max(gaps), 3) if gaps else None,
        "client": "imaplib IMAP4 + STARTTLS on the floating IP; reconnect at once, then every 50 ms",
        "client_kill_median_s": _median(client_kills),
        "client_kill_max_s": round(max(client_kills), 3) if client_kills else None,
        "client_switchover_median_s": _median(client_switch),
        "client_switchover_max_s": round(max(client_switch), 3) if client_switch else None,
        "client_steady_steps_median_ms": steady,
        "client_kill_steps_median_ms": _median_steps(results, "kill"),
        "client_switchover_steps_median_ms": _median_steps(results, "switchover"),
        "client_outage_open_s": (
            None
            if load.stats.outages.open_since is None
            else round(time.monotonic() - load.stats.outages.open_since, 3)
        ),
        "acked": len(load.stats.acked),
        "lost_acked": len(lost),
        "lost_examples": lost[:10],
        "load_errors": load.stats.errors,
        "trials": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    if as_json:
        print(json.dumps(summary))
    else:
        print(
            f"kill -> service: median {summary['kill_median_s']} s, max {summary['kill_max_s']} s "
            f"({len(kills)} trials); switchover gap: median {summary['switchover_median_s']} s "
            f"({len(gaps)} trials); client saw: kill median {summary['client_kill_median_s']} s, "
            f"max {summary['client_kill_max_s']} s; switchover median {summary['client_switchover_median_s']} s, "
            f"max {summary['client_switchover_max_s']} s; acked {summary['acked']}, lost_acked {summary['lost_acked']} "
            f"(written to {out})"
        )
    return 0 if not lost else 1


def _steps_ms(outage: Outage) -> dict[str, float]:
    """The outage's parts in ms: `before` (first error -> the session that ended it began),
    then that session's steps."""
    before = outage.before_session
    if before is None:
        return {}
    return {"before": round(before * 1000, 1)} | {step: round(s * 1000, 1) for step, s in outage.steps}


def _median_steps(results: list[dict[str, object]], kind: str) -> dict[str, float]:
    """Per step, the median over the trials of `kind` that have the step."""
    per_step: dict[str, list[float]] = {}
    for r in results:
        steps = r.get("client_steps_ms")
        if r["kind"] == kind and isinstance(steps, dict):
            for step, ms in steps.items():
                per_step.setdefault(step, []).append(float(ms))
    return {step: round(statistics.median(v), 1) for step, v in per_step.items()}


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _report(result: dict[str, object], as_json: bool) -> None:
    if not as_json:
        print("  " + ", ".join(f"{k}={v}" for k, v in result.items() if k != "window"), flush=True)
