"""What each ZooKeeper member says about itself (`ruok`, `srvr`).

The operator's `mailha status` reports the ensemble's health with it on any
node; the lab's ensemble launcher (lab/zk_ensemble.py) waits on it.
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from nodeconf.config import ZkMember, ZooKeeperConfig


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


def probe_members(cfg: ZooKeeperConfig, timeout: float = 1.0) -> list[MemberStatus]:
    """Every configured member's status, probed in parallel (no pids: not our processes)."""
    with ThreadPoolExecutor(max_workers=len(cfg.members)) as pool:
        return list(pool.map(lambda m: probe(m, None, timeout), cfg.members))
