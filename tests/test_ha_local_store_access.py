"""Issue 13 in the HA cluster: the active node's imapd runs beside its store as in standalone
mode, reading the store's LMDB environment in the shared storage and writing over the
store's local write socket, as the service user (the store's own uid: SO_PEERCRED admits
it, no group or wider mode is needed). Across switchovers both ways, with a client
connected: the new active's imapd reads and writes locally too, a session's mail and flags
are all there, the old node's imapd has exited before its storage is deactivated, and the
storage keeps its owner-only modes."""

from __future__ import annotations

import dataclasses
import imaplib
import os
import pathlib
import pwd
import signal
import smtplib
import ssl
import stat
import subprocess
import time
import uuid
from functools import partial

import grpc
import pytest
import yaml

from haagent import netns, operator
from haagent.supervisor import store_epoch
from nodeconf.paths import shared_store_dir, store_address, store_socket_path
from store.admin import Admin
from tests.ha_agent_lab import AgentLab, cluster_yaml
from tests.ha_lab_fixtures import Lab
from tests.lmtp_standalone import reachable_tmp_dir

pytestmark = [
    pytest.mark.integration,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, the service user)"),
]

MESSAGE = b"From: a@example.org\r\nSubject: beside the store\r\n\r\nbody\r\n"

# Run by the old active when it deactivates the storage (cluster.yaml storage.deactivate):
# which processes still map the environment at that moment (none may).
DEACTIVATE = (
    'grep -l "$STORAGE_PATH/store/lmdb/data.mdb" /proc/[0-9]*/maps > "$STORAGE_PATH/../mapped-$NODE-$EPOCH" '
    "2>/dev/null; true"
)


def service_pid(lab: AgentLab, node: str, name: str) -> int | None:
    """The pid of service `name` (the interpreter, not its setpriv) in the node's namespace."""
    for pid in netns.pids_in_netns(lab.cfg.node(node).namespace):
        try:
            words = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"setpriv" not in words[0] and name.encode() in words[3:5]:
            return pid
    return None


def maps_environment(pid: int, storage: pathlib.Path) -> bool:
    return str(storage / "lmdb" / "data.mdb") in pathlib.Path(f"/proc/{pid}/maps").read_text()


def local_write_connection(lab: AgentLab, node: str, pid: int) -> bool:
    """True when process `pid` holds a connection to the store's writes.sock (ss in the
    node's namespace: the store's end names the socket and its peer's inode)."""
    out = subprocess.run(
        ["ip", "netns", "exec", lab.cfg.node(node).namespace, "ss", "-xan"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    peers = {f[7] for f in (line.split() for line in out.splitlines()) if len(f) >= 8 and f[4].endswith("writes.sock")}
    own = set()
    for fd in pathlib.Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            own.add(target[len("socket:[") : -1])
    return bool(peers & own)


def modes(root: pathlib.Path) -> dict[str, tuple[str, str]]:
    """{path under root: (owner, mode)} of the storage's directories and files."""
    out = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        out[str(path.relative_to(root))] = (pwd.getpwuid(st.st_uid).pw_name, stat.filemode(st.st_mode))
    return out


def client(lab: AgentLab) -> imaplib.IMAP4_SSL:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the cluster's demo pair
    imap = imaplib.IMAP4_SSL(str(lab.cfg.floating_ip.address.ip), lab.cfg.ports.imaps, ssl_context=context, timeout=10)
    imap.login("alice", "alice-password")
    return imap


def wait_local(lab: AgentLab, node: str, storage: pathlib.Path, imap: imaplib.IMAP4_SSL) -> int:
    """The node's imapd pid once it maps the environment and writes through the socket."""
    pid = service_pid(lab, node, "imapd")
    assert pid is not None
    assert maps_environment(pid, storage), f"{node}'s imapd does not read the store's LMDB"
    typ, _ = imap.append("INBOX", "", None, MESSAGE)  # a write: connects the socket
    assert typ == "OK"
    lab.wait_for(f"{node}'s imapd on writes.sock", lambda: local_write_connection(lab, node, pid), timeout=5)
    return pid


def owner_only(storage: pathlib.Path) -> None:
    """Everything the store and imapd made in the storage is the service user's and
    owner-only (lock.mdb included, where imapd's reader slot is)."""
    found = modes(storage)
    assert found["."] == ("mailha", "drwx------")
    assert found["writes.sock"] == ("mailha", "srw-------")
    assert all(owner == "mailha" and mode[4:] == "------" for owner, mode in found.values()), found


def mappers(lab: AgentLab, node: str, storage: pathlib.Path) -> list[int]:
    """Processes of the node's namespace that map the store's environment."""
    out = []
    for pid in netns.pids_in_netns(lab.cfg.node(node).namespace):
        try:
            if maps_environment(pid, storage):
                out.append(pid)
        except OSError:
            continue
    return out


def floating_ip_early(lab: AgentLab, node: str) -> bool:
    """True when the node's front ends start before its store (ip_nonlocal_bind is on)."""
    path = "/proc/sys/net/ipv4/ip_nonlocal_bind"
    argv = ["ip", "netns", "exec", lab.cfg.node(node).namespace, "cat", path]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=10).stdout.strip() == "1"


def released(lab: AgentLab, node: str, storage: pathlib.Path) -> bool:
    return not mappers(lab, node, storage)


def lmtpd_local(lab: AgentLab, node: str) -> None:
    """Deliver one message over LMTP; the node's lmtpd has sent it over writes.sock."""
    pid = service_pid(lab, node, "lmtpd")
    assert pid is not None
    with smtplib.LMTP(str(lab.cfg.floating_ip.address.ip), lab.cfg.ports.lmtp, timeout=10) as lmtp:
        unique = f"Message-ID: <{uuid.uuid4().hex}@example.org>\r\n".encode()  # not a retry's duplicate
        assert lmtp.sendmail("a@example.org", ["alice@example.org"], unique + MESSAGE) == {}
    lab.wait_for(f"{node}'s lmtpd on writes.sock", lambda: local_write_connection(lab, node, pid), timeout=5)


@pytest.mark.parametrize("deactivate", ["none", "shell"])
def test_active_imapd_reads_and_writes_beside_the_store_across_switchovers(
    agent_lab_base: Lab, deactivate: str
) -> None:
    """deactivate "none": the hand-over on storage both nodes see (the new store binds
    writes.sock while the old one still runs); "shell": storage that is handed over (a
    block device), where the old active stops everything before it deactivates."""
    with reachable_tmp_dir() as tmp:
        lab = AgentLab(agent_lab_base, tmp, f"/agent-{uuid.uuid4().hex[:12]}", service_user="mailha")
        if deactivate == "shell":
            lab.cfg = dataclasses.replace(
                lab.cfg, storage=dataclasses.replace(lab.cfg.storage, deactivate=f"shell:{DEACTIVATE}")
            )
            lab.config_path.write_text(yaml.safe_dump(cluster_yaml(lab.cfg)))
        storage = shared_store_dir(lab.cfg.storage)
        try:
            first, second = lab.names
            lab.start_agent(first)
            lab.wait_for(f"{first} active and serving", lambda: lab.active() == first and lab.serves())
            if floating_ip_early(lab, first):
                # A first activation: imapd, started before the store, found no environment
                # yet and was started again once the store had made it.
                assert "imapd exited with 2 before the store served" in (tmp / f"agent-{first}.log").read_text()
            admin = Admin.connect(f"unix:{store_socket_path(lab.cfg, first)}")
            try:
                admin.add_user("alice", "alice-password", 0)
                admin.add_address("alice@example.org", "alice")
            finally:
                admin.close()
            lab.start_agent(second)
            imap = client(lab)
            wait_local(lab, first, storage, imap)
            imap.select("INBOX")
            assert imap.store("1", "+FLAGS", "(\\Flagged)")[0] == "OK"
            owner_only(storage)
            if deactivate == "shell":  # the check finds what maps the environment while it serves
                env = dict(os.environ, STORAGE_PATH=str(lab.cfg.storage.path), NODE="probe", EPOCH="0")
                subprocess.run(["/bin/sh", "-c", DEACTIVATE], env=env, check=True, timeout=30)
                assert (tmp / "mapped-probe-0").read_text().count("/maps") >= 2  # the store and imapd

            expected = 1
            epoch = lab.snapshot().leader.epoch  # type: ignore[union-attr]
            for source, target in ((first, second), (second, first)):
                lab.wait_for(
                    f"{target} standing by",
                    lambda t=target: (
                        (st := lab.snapshot().node_status(t)) is not None  # type: ignore[misc]
                        and st.state == "standby"
                        and st.health == "ok"
                    ),
                )
                result = operator.switchover(lab.cfg, target, hosts=lab.cfg.zookeeper.hosts, timeout=20)
                assert (result.source, result.target) == (source, target)
                try:
                    imap.logout()  # the old session: ended by its BYE, or still in the hand-over
                except (imaplib.IMAP4.abort, OSError):
                    pass
                imap = client(lab)
                wait_local(lab, target, storage, imap)
                lmtpd_local(lab, target)
                expected += 2
                typ, selected = imap.select("INBOX")
                assert typ == "OK" and selected == [str(expected).encode()]
                typ, fetched = imap.fetch("1", "(FLAGS)")
                assert typ == "OK" and isinstance(fetched[0], bytes) and b"\\Flagged" in fetched[0], fetched

                lab.wait_for(f"{source} done with the storage", partial(released, lab, source, storage), 15)
                if deactivate == "shell":
                    # It deactivated the storage only after its imapd and store had exited.
                    mapped = tmp / f"mapped-{source}-{epoch}"
                    lab.wait_for(f"{source}'s deactivation", mapped.exists, timeout=15)
                    assert mapped.read_text() == "", f"mapped at deactivation:\n{mapped.read_text()}"
                # The old store, gone, left the new one's socket in place.
                assert stat.S_ISSOCK((storage / "writes.sock").lstat().st_mode)
                owner_only(storage)
                pid = service_pid(lab, target, "imapd")
                assert pid is not None and mappers(lab, target, storage)
                epoch += 1
            assert imap.append("INBOX", "", None, MESSAGE)[0] == "OK"
            imap.logout()
            # Only the first activation started imapd twice: a switchover finds the environment
            # there, so the warm imapd serves at once (a cold second start would cost the
            # reconnecting clients about a second; haagent/AGENT.md, "Measured").
            relaunches = {n: (tmp / f"agent-{n}.log").read_text().count("before the store served") for n in lab.names}
            assert relaunches == {first: 1 if floating_ip_early(lab, first) else 0, second: 0}, relaunches
        finally:
            lab.stop()
            logs = sorted((tmp / "run").glob("*/log/*.log"))
            print("\n".join(f"--- {p}\n{p.read_text(errors='replace')[-1500:]}" for p in logs))


def parent(pid: int) -> int:
    stat_line = pathlib.Path(f"/proc/{pid}/stat").read_text()
    return int(stat_line[stat_line.rindex(")") + 2 :].split()[1])


def store_serves(lab: AgentLab, node: str) -> bool:
    try:
        store_epoch(store_address(lab.cfg, node), 0.5)
    except grpc.RpcError:
        return False
    return True


def append_until_ok(imap: imaplib.IMAP4_SSL, timeout: float = 15.0) -> None:
    """APPEND until the store takes it (NO [UNAVAILABLE] while it restarts)."""
    deadline = time.monotonic() + timeout
    while True:
        typ, data = imap.append("INBOX", "", None, MESSAGE)
        if typ == "OK":
            return
        assert time.monotonic() < deadline, data
        time.sleep(0.2)


def test_store_restart_and_failover_keep_imapd_beside_the_store(agent_lab_base: Lab) -> None:
    """kill -9 of the store alone (the supervisor starts it again on the same files: imapd's
    reads go on, its next writes connect the new socket), then of the whole active node."""
    with reachable_tmp_dir() as tmp:
        lab = AgentLab(agent_lab_base, tmp, f"/agent-{uuid.uuid4().hex[:12]}", service_user="mailha")
        storage = shared_store_dir(lab.cfg.storage)
        try:
            first, second = lab.names
            lab.start_agent(first)
            lab.wait_for(f"{first} active and serving", lambda: lab.active() == first and lab.serves())
            admin = Admin.connect(f"unix:{store_socket_path(lab.cfg, first)}")
            try:
                admin.add_user("alice", "alice-password", 0)
            finally:
                admin.close()
            lab.start_agent(second)
            imap = client(lab)
            pid = wait_local(lab, first, storage, imap)

            # The store, not imapd nor the full-text worker the store forks.
            found = mappers(lab, first, storage)
            store = [p for p in found if p != pid and parent(p) not in found]
            assert len(store) == 1, store
            os.kill(store[0], signal.SIGKILL)
            lab.wait_for("the store back", partial(store_serves, lab, first), timeout=20)
            append_until_ok(imap)
            lab.wait_for("imapd on the new socket", lambda: local_write_connection(lab, first, pid), timeout=10)
            assert service_pid(lab, first, "imapd") == pid  # the same imapd throughout
            typ, selected = imap.select("INBOX")
            assert typ == "OK" and selected == [b"2"]

            lab.wait_for(
                f"{second} standby",
                lambda: (
                    (st := lab.snapshot().node_status(second)) is not None
                    and st.state == "standby"
                    and st.health == "ok"
                ),
            )
            lab.kill_node(first)
            lab.wait_for(f"{second} serving", lambda: lab.active() == second and lab.serves(), timeout=20)
            imap = client(lab)
            wait_local(lab, second, storage, imap)
            typ, selected = imap.select("INBOX")
            assert typ == "OK" and selected == [b"3"]
            owner_only(storage)
            imap.logout()
        finally:
            lab.stop()
            logs = sorted((tmp / "run").glob("*/log/*.log"))
            print("\n".join(f"--- {p}\n{p.read_text(errors='replace')[-1500:]}" for p in logs))
