"""The floating service address: add it, drop it, announce it.

The agent runs inside its node's network namespace, so `add`/`remove` work
on the namespace the process lives in; `remove_in_namespace` reaches into
another node's namespace (fencing). After adding, several gratuitous ARPs,
spaced by the configured interval, tell the bridge and the host the MAC now
behind the address (the bridge sets arp_accept so even a host without a
neighbour entry learns it).

The refuser: a node that gives the address up keeps it as a /32 on `lo`
for REFUSE_HOLD seconds. `prepare` sets arp_ignore=1 on the service
interface, so the node never answers ARP for an address that is not on that
interface: it is not a holder (nobody is told to send to it), but a SYN
from a client whose neighbour cache still points at its MAC (until the new
holder's gratuitous ARP arrives) is local there, finds no listener and is
refused at once (RST) instead of vanishing into a 1 s SYN retransmission.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import subprocess

import trio
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from haagent.errors import ActionFailed
from haagent.netns import namespace_exists
from nodeconf.config import ClusterConfig, FloatingIpConfig

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6
REFUSER_IFNAME = "lo"
REFUSE_HOLD = 5.0  # seconds a dropped address keeps refusing (RST) on this node
PROC_SYS = "/proc/sys/net/ipv4"


def _index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise ActionFailed(f"interface {ifname} not found")
    return int(found[0])


def _has(ipr: IPRoute, index: int, address: ipaddress.IPv4Interface) -> bool:
    for msg in ipr.addr("dump", index=index, family=socket.AF_INET):
        if msg.get("IFA_ADDRESS") == str(address.ip):
            return True
    return False


def _arp_sysctls(cfg: FloatingIpConfig) -> list[str]:
    return [f"net.ipv4.conf.{cfg.interface}.arp_ignore=1", f"net.ipv4.conf.{cfg.interface}.arp_announce=2"]


def _sysctl(path: str, value: str) -> None:
    with open(f"{PROC_SYS}/{path}", "w") as f:
        f.write(value)


def prepare(cfg: FloatingIpConfig) -> None:
    """Once per agent start, in this process's namespace: answer ARP only for
    addresses on the service interface (arp_ignore=1: never for the refuser
    on lo), source ARP requests from the interface's own address
    (arp_announce=2: an RST sent from the refuser must not advertise the
    floating IP), allow front ends to listen on the floating IP before it
    arrives (ip_nonlocal_bind=1), and drop a refuser left by a previous life."""
    try:
        _sysctl(f"conf/{cfg.interface}/arp_ignore", "1")
        _sysctl(f"conf/{cfg.interface}/arp_announce", "2")
        _sysctl("ip_nonlocal_bind", "1")
    except OSError as exc:
        raise ActionFailed(f"setting the ARP/bind sysctls for {cfg.interface}: {exc}") from exc
    drop_refuser(cfg)
    accept_new_connections()


def arp_ignored(cfg: FloatingIpConfig) -> bool:
    """True when this namespace answers ARP only for addresses on the service
    interface: only then may the refuser exist (it must never attract traffic)."""
    try:
        with open(f"{PROC_SYS}/conf/{cfg.interface}/arp_ignore") as f:
            return int(f.read()) in (1, 2)
    except (OSError, ValueError):
        return False


REFUSE_NEW_TABLE = "mailha_refuse_new"


def refuse_new_connections(cfg: FloatingIpConfig) -> None:
    """Hand-over: a new TCP connection to the floating IP from outside this
    node is refused (RST) here, while the connections already open go on
    (only a SYN without ACK matches). A client that reconnects during the
    hand-over then waits for the new holder instead of opening a session on
    the old one that the fence is about to break."""
    rule = f"ip daddr {cfg.address.ip} tcp flags & (syn | ack) == syn reject with tcp reset"
    script = (
        f"add table ip {REFUSE_NEW_TABLE}\n"
        f"add chain ip {REFUSE_NEW_TABLE} input {{ type filter hook input priority -5 ; policy accept ; }}\n"
        f'add rule ip {REFUSE_NEW_TABLE} input iifname != "lo" {rule}\n'
    )
    proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=5, check=False)
    if proc.returncode != 0:
        raise ActionFailed(f"nft: {proc.stderr.strip()}")


def accept_new_connections() -> None:
    """Undo refuse_new_connections (idempotent)."""
    subprocess.run(
        ["nft", "delete", "table", "ip", REFUSE_NEW_TABLE], capture_output=True, text=True, timeout=5, check=False
    )


def nonlocal_bind_allowed() -> bool:
    """True when sockets here may bind the floating IP before it is local."""
    try:
        with open(f"{PROC_SYS}/ip_nonlocal_bind") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def _add_refuser(ipr: IPRoute, cfg: FloatingIpConfig) -> None:
    lo = _index(ipr, REFUSER_IFNAME)
    if not _has(ipr, lo, cfg.address):
        try:
            ipr.addr("add", index=lo, address=str(cfg.address.ip), prefixlen=32)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise


def _drop_refuser(ipr: IPRoute, cfg: FloatingIpConfig) -> None:
    lo = _index(ipr, REFUSER_IFNAME)
    if _has(ipr, lo, cfg.address):
        try:
            ipr.addr("del", index=lo, address=str(cfg.address.ip), prefixlen=32)
        except NetlinkError as exc:
            if exc.code != errno.EADDRNOTAVAIL:
                raise


def drop_refuser(cfg: FloatingIpConfig) -> None:
    """Stop refusing connections to the floating IP here (idempotent)."""
    try:
        with IPRoute() as ipr:
            _drop_refuser(ipr, cfg)
    except NetlinkError as exc:
        raise ActionFailed(f"removing the refuser {cfg.address.ip}/32 from {REFUSER_IFNAME}: {exc}") from exc


def refusing_here(cfg: FloatingIpConfig) -> bool:
    try:
        with IPRoute() as ipr:
            return _has(ipr, _index(ipr, REFUSER_IFNAME), cfg.address)
    except NetlinkError:
        return False


def add(cfg: FloatingIpConfig) -> None:
    """Add the floating IP to the interface in this process's namespace (idempotent)."""
    try:
        with IPRoute() as ipr:
            index = _index(ipr, cfg.interface)
            if not _has(ipr, index, cfg.address):
                ipr.addr("add", index=index, address=str(cfg.address.ip), prefixlen=cfg.address.network.prefixlen)
            _drop_refuser(ipr, cfg)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise ActionFailed(f"adding {cfg.address} to {cfg.interface}: {exc}") from exc


def _remove(ipr: IPRoute, cfg: FloatingIpConfig) -> bool:
    found = ipr.link_lookup(ifname=cfg.interface)
    if not found:
        return False
    index = int(found[0])
    if not _has(ipr, index, cfg.address):
        return False
    try:
        ipr.addr("del", index=index, address=str(cfg.address.ip), prefixlen=cfg.address.network.prefixlen)
    except NetlinkError as exc:
        if exc.code not in (errno.EADDRNOTAVAIL, errno.ENODEV):
            raise
        return False
    return True


def remove(cfg: FloatingIpConfig) -> bool:
    """Drop the floating IP here; True if it was held. Never raises on absence.
    A held address becomes the refuser on lo first (see the module docstring):
    there is no instant at which a SYN reaching this node is silently dropped."""
    try:
        with IPRoute() as ipr:
            if held_by(ipr, cfg) and arp_ignored(cfg):
                _add_refuser(ipr, cfg)
            return _remove(ipr, cfg)
    except NetlinkError as exc:
        raise ActionFailed(f"removing {cfg.address} from {cfg.interface}: {exc}") from exc


# Other namespaces are reached with iproute2's `ip -n` rather than pyroute2's
# netns support: pyroute2 forks a helper process for it, and a fork of a
# process that runs gRPC threads can crash the child (seen: SIGSEGV).


def addresses_in_namespace(namespace: str, ifname: str) -> list[ipaddress.IPv4Interface]:
    """IPv4 addresses `ifname` really holds in `namespace` (empty if either is missing)."""
    if not namespace_exists(namespace):
        return []
    proc = subprocess.run(
        ["ip", "-n", namespace, "-4", "-o", "addr", "show", "dev", ifname],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    found = []
    for line in proc.stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            found.append(ipaddress.IPv4Interface(fields[fields.index("inet") + 1]))
    return found


def remove_in_namespace(cfg: FloatingIpConfig, namespace: str) -> bool:
    """Drop the floating IP from another node's namespace (fencing), leaving
    the refuser on its lo (its agent drops it when it starts again)."""
    if not any(a.ip == cfg.address.ip for a in addresses_in_namespace(namespace, cfg.interface)):
        return False
    # The refuser must not answer ARP there either (its agent set this when
    # it started; an address added by other means gets the same guarantee).
    sysctl = subprocess.run(
        ["ip", "netns", "exec", namespace, "sysctl", "-q", "-w", *_arp_sysctls(cfg)],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    if sysctl.returncode != 0:
        raise ActionFailed(f"setting arp_ignore in {namespace}: {sysctl.stderr.strip()}")
    commands = f"address add {cfg.address.ip}/32 dev {REFUSER_IFNAME}\naddress del {cfg.address} dev {cfg.interface}\n"
    proc = subprocess.run(
        ["ip", "-n", namespace, "-force", "-batch", "-"],
        input=commands,
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    if any(a.ip == cfg.address.ip for a in addresses_in_namespace(namespace, cfg.interface)):
        raise ActionFailed(f"removing {cfg.address} in {namespace}: {proc.stderr.strip()}")
    return True


def held_by(ipr: IPRoute, cfg: FloatingIpConfig) -> bool:
    found = ipr.link_lookup(ifname=cfg.interface)
    return bool(found) and _has(ipr, int(found[0]), cfg.address)


def held_here(cfg: FloatingIpConfig) -> bool:
    try:
        with IPRoute() as ipr:
            return held_by(ipr, cfg)
    except NetlinkError:
        return False


async def retire_refuser(cfg: FloatingIpConfig, hold: float = REFUSE_HOLD) -> None:
    """After `hold` seconds (every neighbour cache has heard the new holder's
    gratuitous ARPs by then), stop refusing, unless the address came back."""
    await trio.sleep(hold)
    if not await trio.to_thread.run_sync(held_here, cfg):
        await trio.to_thread.run_sync(drop_refuser, cfg)


def holders(cluster: ClusterConfig) -> list[str]:
    """Nodes whose namespace really holds the floating IP (read from the kernel)."""
    fip = cluster.floating_ip
    return [
        n.name
        for n in cluster.nodes
        if any(a.ip == fip.address.ip for a in addresses_in_namespace(n.namespace, fip.interface))
    ]


def garp_frame(mac: bytes, ip: ipaddress.IPv4Address) -> bytes:
    """A gratuitous ARP request: sender and target protocol address are both `ip`."""
    eth = BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + ip.packed + b"\x00" * 6 + ip.packed
    return eth + arp


def _mac(ifname: str) -> bytes:
    with IPRoute() as ipr:
        links = ipr.get_links(_index(ipr, ifname))
        text = links[0].get("IFLA_ADDRESS")
    if not isinstance(text, str):
        raise ActionFailed(f"{ifname} has no MAC address")
    return bytes.fromhex(text.replace(":", ""))


def send_garp(cfg: FloatingIpConfig) -> None:
    """One gratuitous ARP on the interface (raw AF_PACKET socket)."""
    frame = garp_frame(_mac(cfg.interface), cfg.address.ip)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
        sock.bind((cfg.interface, 0))
        sock.send(frame)


async def announce(cfg: FloatingIpConfig) -> None:
    """garp_count gratuitous ARPs, garp_interval apart; the first at once."""
    for i in range(cfg.garp_count):
        if i:
            await trio.sleep(cfg.garp_interval)
        if not held_here(cfg):
            return  # dropped meanwhile (SUSPENDED): announcing it would mislead the LAN
        try:
            send_garp(cfg)
        except OSError:
            # The address may have been dropped meanwhile (SUSPENDED); a
            # missing announcement is harmless, a crash here is not.
            return
