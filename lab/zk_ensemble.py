"""A real ZooKeeper ensemble from Debian's `zookeeper` package, one JVM per member.

`mailha zk up|down` and the pytest fixture both drive this module, so tests
exercise exactly what the demo cluster runs. Each member lives in its own
directory under `ZooKeeperConfig.data_dir`:

    member<id>/zoo.cfg     generated from cluster.yaml on every start
    member<id>/data/myid   the member id (ZooKeeper's own convention)
    member<id>/zk.pid      pid of the JVM
    member<id>/zk.log      the JVM's stdout/stderr (slf4j-simple logs there)
    secret                 the clients' digest password (default auth_password_file)

Processes are found again by pid file *and* by scanning /proc for a
QuorumPeerMain whose command line names this member's zoo.cfg, so `down`
works after a crash of the starter and never kills a recycled pid.

Data directories survive `down`: the agent's epoch counter lives in
ZooKeeper and must stay above the epoch stored in LMDB on shared storage.
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from nodeconf.config import ZkMember, ZooKeeperConfig
from nodeconf.secret_file import ensure_secret
from nodeconf.service_process import make_private_dirs, open_log, write_private_text

JAVA = "/usr/bin/java"
# zookeeper.jar's manifest carries the rest of the classpath (jute, netty,
# slf4j-api, ...); slf4j-simple gives the JVM a logger that writes to stderr.
CLASSPATH = ("/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-simple.jar")
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
JVM_OPTIONS = (
    "-Xmx128m",
    "-Xss512k",
    "-XX:+UseSerialGC",
    # C1 only: a member is ready much sooner and ZooKeeper's load here is tiny.
    "-XX:TieredStopAtLevel=1",
    "-Djava.net.preferIPv4Stack=true",
    "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
    # Every ruok/srvr probe is logged at INFO by these two; keep the log for events.
    "-Dorg.slf4j.simpleLogger.log.org.apache.zookeeper.server.NIOServerCnxn=warn",
    "-Dorg.slf4j.simpleLogger.log.org.apache.zookeeper.server.command.AbstractFourLetterCommand=warn",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
    "-Dzookeeper.admin.enableServer=false",
)
FOUR_LETTER_WORDS = "ruok,srvr,stat,mntr,conf"

# JVMs this process started, kept so they are reaped (no zombies, no
# "still running" ResourceWarning from a collected Popen).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class EnsembleError(Exception):
    """Root of this module's errors: a member would not start, stop or answer."""


@dataclass(frozen=True)
class MemberStatus:
    """What one member says about itself right now (from `ruok` and `srvr`)."""

    id: int
    address: str
    pid: int | None
    ok: bool  # answered `ruok` with `imok`
    mode: str | None  # "leader", "follower", "standalone" or None (not serving)

    @property
    def serving(self) -> bool:
        return self.ok and self.mode is not None


def four_letter_word(host: str, port: int, word: str, timeout: float = 1.0) -> str:
    """Send a ZooKeeper four-letter command; return the reply ("" if none)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(word.encode("ascii"))
        sock.shutdown(socket.SHUT_WR)
        chunks: list[bytes] = []
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def probe(member: ZkMember, pid: int | None = None, timeout: float = 1.0) -> MemberStatus:
    """Ask one member `ruok` and `srvr`; never raises for a dead member."""
    address = f"{member.host}:{member.client_port}"
    try:
        ok = four_letter_word(member.host, member.client_port, "ruok", timeout) == "imok"
        mode = None
        if ok:
            for line in four_letter_word(member.host, member.client_port, "srvr", timeout).splitlines():
                if line.startswith("Mode:"):
                    mode = line.split(":", 1)[1].strip()
    except OSError:
        return MemberStatus(member.id, address, pid, False, None)
    return MemberStatus(member.id, address, pid, ok, mode)


@dataclass(frozen=True)
class MemberFiles:
    """Where one member keeps its files."""

    root: pathlib.Path

    @property
    def config(self) -> pathlib.Path:
        return self.root / "zoo.cfg"

    @property
    def data(self) -> pathlib.Path:
        return self.root / "data"

    @property
    def pid_file(self) -> pathlib.Path:
        return self.root / "zk.pid"

    @property
    def log(self) -> pathlib.Path:
        return self.root / "zk.log"


def render_config(cfg: ZooKeeperConfig, member: ZkMember, files: MemberFiles) -> str:
    """zoo.cfg for one member.

    Ticks are short (200 ms by default) so a 2 s client session is allowed
    (minSessionTimeout = 2 ticks) and a dead follower is noticed within
    syncLimit ticks. init/syncLimit leave slack for JVM pauses on a busy host.
    """
    tick = cfg.tick_time_ms
    lines = [
        "# generated by mailha (lab/zk_ensemble.py); edits are overwritten",
        f"tickTime={tick}",
        f"initLimit={max(10, 10000 // tick)}",
        f"syncLimit={max(5, 2000 // tick)}",
        f"minSessionTimeout={2 * tick}",
        f"maxSessionTimeout={max(60000, 20 * tick)}",
        f"dataDir={files.data}",
        f"clientPort={member.client_port}",
        f"clientPortAddress={member.host}",
        "maxClientCnxns=200",
        f"4lw.commands.whitelist={FOUR_LETTER_WORDS}",
        "admin.enableServer=false",
        # A small preallocated transaction log: the default 64 MiB per file
        # is wasteful for a demo and for test temp dirs.
        "preAllocSize=4096",
        "snapCount=10000",
        "autopurge.snapRetainCount=3",
        "autopurge.purgeInterval=1",
        # A 1-member "ensemble" runs standalone; 3 members form a quorum.
        "standaloneEnabled=true",
        "reconfigEnabled=false",
    ]
    for m in cfg.members:
        lines.append(f"server.{m.id}={m.host}:{m.peer_port}:{m.election_port}")
    return "\n".join(lines) + "\n"


def _cmdline(pid: int) -> list[str]:
    try:
        raw = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _is_member_process(pid: int, files: MemberFiles) -> bool:
    argv = _cmdline(pid)
    return MAIN_CLASS in argv and str(files.config) in argv


def _all_pids() -> Iterable[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers signal 0; it is gone for our purposes.
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


class Ensemble:
    """Start, stop and inspect the members of one ensemble described by `cfg`.

    Every method is idempotent: starting a running member or stopping a
    stopped one does nothing. Nothing here holds state beyond the files.
    """

    def __init__(self, cfg: ZooKeeperConfig, *, die_with_parent: bool = False) -> None:
        """die_with_parent: members get SIGKILL when the starting thread's
        process dies (test fixtures: no JVM outlives a killed pytest).
        `mailha zk up` leaves it off so the ensemble outlives the command."""
        self.cfg = cfg
        self.die_with_parent = die_with_parent

    # -- inspection ---------------------------------------------------------

    def member(self, member_id: int) -> ZkMember:
        for m in self.cfg.members:
            if m.id == member_id:
                return m
        raise EnsembleError(f"no ZooKeeper member with id {member_id}")

    def files(self, member_id: int) -> MemberFiles:
        return MemberFiles(self.cfg.data_dir / f"member{member_id}")

    def pid(self, member_id: int) -> int | None:
        """The running JVM of this member, from its pid file or else /proc."""
        files = self.files(member_id)
        try:
            pid = int(files.pid_file.read_text().strip())
        except (OSError, ValueError):
            pid = None
        if pid is not None and pid in _CHILDREN and _alive(pid):
            return pid  # ours; its cmdline may not show java yet (between fork and exec)
        if pid is not None and _alive(pid) and _is_member_process(pid, files):
            return pid
        for candidate in _all_pids():
            if _is_member_process(candidate, files) and _alive(candidate):
                return candidate
        return None

    def status(self, timeout: float = 1.0) -> list[MemberStatus]:
        """Each member's status, probed in parallel."""
        with ThreadPoolExecutor(max_workers=len(self.cfg.members)) as pool:
            return list(pool.map(lambda m: probe(m, self.pid(m.id), timeout), self.cfg.members))

    def leader(self) -> int | None:
        """Id of the member that reports Mode: leader (or standalone), if any."""
        for st in self.status():
            if st.mode in ("leader", "standalone"):
                return st.id
        return None

    # -- start --------------------------------------------------------------

    def _spawn(self, member: ZkMember) -> int:
        """Start one member's JVM unless it runs already; return its pid."""
        running = self.pid(member.id)
        if running is not None:
            return running
        files = self.files(member.id)
        # The data and logs hold the digest credentials' hash and every znode: owner only.
        for d in (self.cfg.data_dir, files.root, files.data):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(d, 0o700)
        write_private_text(files.data / "myid", f"{member.id}\n")
        write_private_text(files.config, render_config(self.cfg, member, files))
        argv = [
            *(("setpriv", "--pdeathsig", "KILL", "--") if self.die_with_parent else ()),
            JAVA,
            *JVM_OPTIONS,
            f"-Dzookeeper.log.dir={files.root}",
            "-cp",
            ":".join(CLASSPATH),
            MAIN_CLASS,
            str(files.config),
        ]
        log = open_log(files.log)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=files.root,
                start_new_session=True,  # survives the starter; `down` finds it
                umask=0o077,  # snapshots, transaction logs
            )
        finally:
            os.close(log)
        _CHILDREN[proc.pid] = proc
        write_private_text(files.pid_file, f"{proc.pid}\n")
        return proc.pid

    def start(self, timeout: float = 60.0) -> list[MemberStatus]:
        """Start every member at once, then wait until all of them serve.

        Also generates the clients' digest secret (zookeeper.auth_password_file) if
        there is none yet: whoever brings the ensemble up decides it, once."""
        make_private_dirs(self.cfg.data_dir)
        ensure_secret(self.cfg.secret_file)
        for m in self.cfg.members:
            self._spawn(m)
        return self.wait_serving([m.id for m in self.cfg.members], timeout)

    def start_member(self, member_id: int, timeout: float = 30.0) -> MemberStatus:
        """Start one member and wait until it serves (needs a quorum to join)."""
        self._spawn(self.member(member_id))
        return self.wait_serving([member_id], timeout)[0]

    def wait_serving(self, member_ids: list[int], timeout: float) -> list[MemberStatus]:
        """Poll until each member answers `imok` and reports a mode."""
        deadline = time.monotonic() + timeout
        members = [self.member(i) for i in member_ids]
        while True:
            statuses = [probe(m, self.pid(m.id), timeout=0.5) for m in members]
            if all(st.serving for st in statuses):
                return statuses
            for st in statuses:
                if st.pid is None:
                    raise EnsembleError(f"ZooKeeper member {st.id} exited during start-up; see {self.files(st.id).log}")
            if time.monotonic() >= deadline:
                waiting = ", ".join(f"{st.id} ({st.address})" for st in statuses if not st.serving)
                raise EnsembleError(f"ZooKeeper members not serving after {timeout:.0f} s: {waiting}")
            time.sleep(0.1)

    # -- stop ---------------------------------------------------------------

    def stop_member(self, member_id: int, timeout: float = 10.0, sig: signal.Signals = signal.SIGTERM) -> bool:
        """Stop one member (SIGTERM, then SIGKILL after `timeout`).

        Returns whether a process was found. The pid file goes either way.
        """
        files = self.files(self.member(member_id).id)
        pid = self.pid(member_id)
        found = pid is not None
        if pid is not None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                while _alive(pid):
                    time.sleep(0.05)
        files.pid_file.unlink(missing_ok=True)
        return found

    def stop(self, timeout: float = 10.0) -> int:
        """Stop every member in parallel; return how many were running."""
        with ThreadPoolExecutor(max_workers=len(self.cfg.members)) as pool:
            found = list(pool.map(lambda m: self.stop_member(m.id, timeout), self.cfg.members))
        return sum(found)
