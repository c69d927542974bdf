"""Issue 9 item 10 in the HA cluster: the agent stays root (addresses, namespaces);
store, imapd and lmtpd run as the service user on whichever node is active, bind
IMAP 143 and LMTP 24 on the floating IP, and the node's runtime directory stays
0700 across a failover."""

from __future__ import annotations

import os
import pathlib
import pwd
import stat
import uuid

import pytest

from haagent import netns
from tests.ha_agent_lab import AgentLab
from tests.ha_lab_fixtures import Lab
from tests.lmtp_standalone import reachable_tmp_dir

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, the drop itself)")


def users_in(lab: AgentLab, node: str) -> dict[str, str]:
    """{process: user} of mailha's processes in the node's namespace."""
    found: dict[str, str] = {}
    for pid in netns.pids_in_netns(lab.cfg.node(node).namespace):
        try:
            args = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in args]
        for name in ("agent", "store", "imapd", "lmtpd"):
            if name in words[3:5] and "setpriv" not in words[0]:
                found[name] = pwd.getpwuid(uid).pw_name
    return found


def test_services_run_as_the_service_user_across_a_failover(agent_lab_base: Lab) -> None:
    with reachable_tmp_dir() as tmp:
        lab = AgentLab(agent_lab_base, tmp, f"/agent-{uuid.uuid4().hex[:12]}", service_user="mailha")
        try:
            assert lab.cfg.ports.imap < 1024 and lab.cfg.ports.lmtp < 1024  # privileged ports, bound as mailha
            first, second = lab.names
            lab.start_agent(first)
            lab.wait_for(f"{first} active and serving", lambda: lab.active() == first and lab.serves())
            lab.wait_for("all services up", lambda: set(users_in(lab, first)) == {"agent", "store", "imapd", "lmtpd"})
            assert users_in(lab, first) == {"agent": "root", "store": "mailha", "imapd": "mailha", "lmtpd": "mailha"}
            run_dir = lab.cfg.runtime_dir / first
            assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
            assert pwd.getpwuid((run_dir / "store.sock").stat().st_uid).pw_name == "mailha"

            lab.start_agent(second)
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
            lab.wait_for("services up on the new active", lambda: {"store", "lmtpd"} <= set(users_in(lab, second)))
            users = users_in(lab, second)
            assert {users[n] for n in users if n != "agent"} == {"mailha"} and users["agent"] == "root"
            assert stat.S_IMODE((lab.cfg.runtime_dir / second).stat().st_mode) == 0o700
        finally:
            lab.stop()
            logs = sorted((tmp / "run").glob("*/log/*.log"))
            print("\n".join(f"--- {p}\n{p.read_text(errors='replace')[-1500:]}" for p in logs))
