"""`mailha cluster up|down`: the whole demo cluster on one host.

up:   topology (lab/topology.py) -> ZooKeeper ensemble on the bridge
      address (lab/zk_ensemble.py) -> shared storage directory -> demo
      TLS certificate -> one agent per node inside its namespace -> wait for
      an IMAP greeting on the floating IP -> demo user through the active
      node's store -> how to connect.
down: agents and everything else living in the node namespaces, the
      ensemble, then the topology. Everything is found from cluster.yaml
      (pid files, then the namespaces' process lists), so it works after a
      crash and does nothing the second time.

Files, shared with the agent (it uses the same helpers):
    runtime_dir/NODE/agent.pid, agent.log   written here
    runtime_dir/NODE/store.sock             the node's store (gRPC, unix socket)
    runtime_dir/tls/cert.pem, key.pem       demo certificate when tls: {} is empty
                                            (haagent/demo_tls.py: tls_files, ensure_tls_files)

Persistent data (storage.path, zookeeper.data_dir) survives `down` on
purpose: the epoch counter in ZooKeeper must stay above the epoch stored
with the mail.
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TextIO

import grpc

from haagent import netns
from haagent.demo_tls import ensure_tls_files
from haagent.front_ends import service_probe as agent_service_probe
from lab import topology
from lab.zk_ensemble import Ensemble, EnsembleError
from nodeconf.config import ClusterConfig
from nodeconf.paths import agent_log_file, agent_pid_file, node_runtime_dir, store_socket_path
from nodeconf.service_process import open_log, write_private_text
from store.client import StoreClient

DEMO_USER = "demo"
DEMO_PASSWORD = "demo"
DEMO_ADDRESS = "demo@mailha.test"


class ClusterError(Exception):
    """The demo cluster could not be brought up (the message says which step)."""


def agent_argv(cfg: ClusterConfig, node: str) -> list[str]:
    if cfg.source is None:
        raise ClusterError("the cluster config must come from a file the agents can read (--config)")
    return [sys.executable, "-m", "mailha.cli", "agent", "--config", str(cfg.source.resolve()), "--node", node]


# ---------------------------------------------------------------------------
# Agents


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot): with the pid,
    it names one process for good, so a recycled pid is never mistaken for it."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return None if fields[0] == "Z" else fields[19]


def agent_pid(cfg: ClusterConfig, node: str) -> int | None:
    """The running agent of `node`, from its pid file (None if not running)."""
    try:
        pid_text, started = agent_pid_file(cfg, node).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    child = _AGENTS.get(pid)
    if child is not None and child.poll() is not None:
        return None
    return pid if process_start_time(pid) == started else None


_AGENTS: dict[int, subprocess.Popen[bytes]] = {}  # reaped by down when we started them


AgentCommand = Callable[[ClusterConfig, str], list[str]]


def start_agent(cfg: ClusterConfig, node: str, command: AgentCommand = agent_argv) -> int:
    """Start `node`'s agent detached inside its namespace unless it runs; return its pid."""
    running = agent_pid(cfg, node)
    if running is not None:
        return running
    run_dir = node_runtime_dir(cfg, node)
    run_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(run_dir, 0o700)
    log = open_log(agent_log_file(cfg, node))
    try:
        proc = netns.popen_in_netns(
            cfg.node(node).namespace,
            command(cfg, node),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(pathlib.Path(__file__).resolve().parent.parent),
            start_new_session=True,  # outlives `mailha cluster up`
        )
    finally:
        os.close(log)
    _AGENTS[proc.pid] = proc
    write_private_text(agent_pid_file(cfg, node), f"{proc.pid} {process_start_time(proc.pid)}\n")
    return proc.pid


def _alive(pid: int) -> bool:
    child = _AGENTS.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = [p for p in pids if _alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if _alive(p)]
    return left


def stop_processes(cfg: ClusterConfig, nodes: list[str] | None = None, grace: float = 10.0) -> dict[str, int]:
    """Stop the agents of `nodes` (default all) at once - so no standby takes
    over from a stopping active -, then anything left in their namespaces.

    Returns how many processes were signalled per node.
    """
    names = [n.name for n in cfg.nodes] if nodes is None else nodes
    counts = dict.fromkeys(names, 0)
    agents = {name: pid for name in names if (pid := agent_pid(cfg, name)) is not None}
    _signal_all(list(agents.values()), signal.SIGTERM)
    for name in agents:
        counts[name] += 1
    left = _wait_gone(list(agents.values()), grace)
    _signal_all(left, signal.SIGKILL)
    _wait_gone(left, 5)
    rest: dict[str, list[int]] = {}
    for name in names:
        pids = [p for p in netns.pids_in_netns(cfg.node(name).namespace) if p != os.getpid()]
        rest[name] = pids
        counts[name] += len(pids)
    everyone = [p for pids in rest.values() for p in pids]
    _signal_all(everyone, signal.SIGTERM)
    left = _wait_gone(everyone, grace / 2)
    _signal_all(left, signal.SIGKILL)
    _wait_gone(left, 5)
    for p in list(_AGENTS):
        if not _alive(p):
            _AGENTS.pop(p).wait()
    for name in names:
        agent_pid_file(cfg, name).unlink(missing_ok=True)
    return counts


def stop_node_processes(cfg: ClusterConfig, node: str, grace: float = 10.0) -> int:
    """Stop `node`'s agent (it stops its services), then anything left in its namespace."""
    return stop_processes(cfg, [node], grace)[node]


# ---------------------------------------------------------------------------
# Readiness and the demo user


def greeting_line(host: str, port: int, timeout: float = 2.0) -> bytes | None:
    """The first line a server sends (IMAP `* OK`, LMTP `220`), or None when nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            data = b""
            while b"\r\n" not in data and len(data) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data.split(b"\r\n", 1)[0]
    except OSError:
        return None


def service_probe(cfg: ClusterConfig) -> tuple[int, bytes]:
    """(port, greeting prefix) proving the service is up on the floating IP:
    the agent's choice (IMAP once imapd is a front end, LMTP before that)."""
    return agent_service_probe(cfg)


def wait_for_service(cfg: ClusterConfig, timeout: float) -> str:
    """Wait until the floating IP greets; return the node whose namespace holds it."""
    host = str(cfg.floating_ip.address.ip)
    port, prefix = service_probe(cfg)
    deadline = time.monotonic() + timeout
    while True:
        greeting = greeting_line(host, port)
        if greeting is not None and greeting.startswith(prefix):
            holders = netns.holders_of(cfg, cfg.floating_ip.address.ip)
            if len(holders) == 1:
                return holders[0]
        if not any(agent_pid(cfg, n.name) for n in cfg.nodes):
            logs = ", ".join(str(agent_log_file(cfg, n.name)) for n in cfg.nodes)
            raise ClusterError(f"every agent exited; see {logs}")
        if time.monotonic() >= deadline:
            raise ClusterError(f"no {prefix!r} greeting on {host}:{port} within {timeout:.0f} s")
        time.sleep(0.2)


def create_demo_user(cfg: ClusterConfig, node: str, timeout: float = 30.0) -> bool:
    """Create the demo user through `node`'s store; False if it existed already."""
    # Imported here: `cluster down` (and the tests of it) need no gRPC.

    with StoreClient(f"unix:{store_socket_path(cfg, node)}", timeout=timeout) as client:
        epoch = client.writable_epoch(timeout)
        try:
            client.create_user(DEMO_USER, DEMO_PASSWORD, epoch=epoch)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
                return False
            raise ClusterError(f"creating the demo user on {node} failed: {exc.code().name} {exc.details()}") from None
        try:
            client.add_address(DEMO_ADDRESS, DEMO_USER, epoch=epoch)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise ClusterError(f"adding {DEMO_ADDRESS} on {node} failed: {exc.code().name}") from None
    return True


# ---------------------------------------------------------------------------
# up / down


def cluster_up(
    cfg: ClusterConfig,
    *,
    timeout: float = 90.0,
    out: TextIO = sys.stdout,
    agent_command: AgentCommand = agent_argv,
    demo_user: bool = True,
) -> str:
    """Bring the demo cluster up (idempotent); return the active node's name.

    agent_command and demo_user exist for tests of the orchestration itself.
    """
    if os.geteuid() != 0:
        raise ClusterError("needs root (network namespaces, addresses on the bridge)")
    t0 = time.monotonic()
    try:
        topology.topology_up(cfg)
    except netns.NetnsError as exc:
        raise ClusterError(str(exc)) from exc
    print(
        f"network: bridge {cfg.bridge} {cfg.bridge_address}, "
        + ", ".join(f"{n.name} {n.address} in {n.namespace}" for n in cfg.nodes),
        file=out,
    )
    try:
        statuses = Ensemble(cfg.zookeeper).start()
    except EnsembleError as exc:
        raise ClusterError(str(exc)) from exc
    print("zookeeper: " + ", ".join(f"{st.address} {st.mode}" for st in statuses), file=out)
    if cfg.storage.activate == "dir":
        cfg.storage.path.mkdir(parents=True, exist_ok=True)
        os.chmod(cfg.storage.path, 0o700)
    cfg.runtime_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(cfg.runtime_dir, 0o755)
    cert, _key, made = ensure_tls_files(cfg)
    if made:
        print(f"tls: made a self-signed demo certificate {cert}", file=out)
    for node in cfg.nodes:
        pid = start_agent(cfg, node.name, agent_command)
        print(f"agent {node.name}: pid {pid}, log {agent_log_file(cfg, node.name)}", file=out)
    out.flush()
    active = wait_for_service(cfg, timeout)
    created = create_demo_user(cfg, active) if demo_user else False
    floating = cfg.floating_ip.address.ip
    print(f"\nmailha cluster {cfg.name!r} is up in {time.monotonic() - t0:.1f} s; {active} is active.", file=out)
    if service_probe(cfg)[0] == cfg.ports.imap:
        print(f"  IMAP   {floating}:{cfg.ports.imap} (STARTTLS) and {floating}:{cfg.ports.imaps} (TLS)", file=out)
    else:
        print("  IMAP   not served: the agent has no imapd front end in this build", file=out)
    print(f"  LMTP   {floating}:{cfg.ports.lmtp}", file=out)
    print(
        f"  user   {DEMO_USER} / password {DEMO_PASSWORD} ({DEMO_ADDRESS})" + ("" if created else " - existed already"),
        file=out,
    )
    print(f"  cert   {cert} (self-signed: e.g. openssl s_client -starttls imap -connect {floating}:143)", file=out)
    print(f"  state  mailha status --config {cfg.source or 'cluster.yaml'}", file=out)
    print(f"  stop   mailha cluster down --config {cfg.source or 'cluster.yaml'}", file=out)
    out.flush()
    return active


def cluster_down(cfg: ClusterConfig, *, out: TextIO = sys.stdout) -> list[str]:
    """Stop everything and remove the topology; safe to run twice. Returns what it did."""
    done: list[str] = []
    for node, n in stop_processes(cfg).items():
        if n:
            done.append(f"stopped {n} process(es) of {node}")
    stopped = Ensemble(cfg.zookeeper).stop()
    if stopped:
        done.append(f"stopped {stopped} ZooKeeper member(s)")
    done += topology.topology_down(cfg)
    for line in done or ["nothing to do: the cluster was down"]:
        print(line, file=out)
    out.flush()
    return done
