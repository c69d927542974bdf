"""What the HA cluster's imapd gains from running beside its store (issue 13), seen by imaplib.

Run as root from the repository: `.venv/bin/python scripts/ha_local_ab.py [--rounds 3]
[--samples 200]`. It builds a throwaway lab (tests/ha_lab_fixtures.py: namespaces, a
three-member ZooKeeper ensemble), starts one agent, and beside the cluster's own imapd starts
two more on the active node, bound to the floating IP, with the command line the agent uses
(nodeconf.services.imapd_service, same store, epoch and environment): one with
`--store-data` (what haagent/front_ends.py now passes), one without (what it passed before).
One imaplib session from the host measures each command against each, the two alternating
in every round (ABBA). Prints JSON: per command and variant the p50/p99 of every round, the
median of the rounds' p50s, the ratio local/remote, and the load average before and after.
Everything it started is stopped and removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import imaplib
import itertools
import json
import os
import pathlib
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from haagent import netns  # noqa: E402
from haagent.demo_tls import tls_files  # noqa: E402
from haagent.supervisor import greets  # noqa: E402
from nodeconf import services  # noqa: E402
from nodeconf.paths import shared_store_dir, store_address, store_socket_path  # noqa: E402
from store.admin import Admin  # noqa: E402
from tests.ha_agent_lab import AgentLab  # noqa: E402
from tests.ha_lab_fixtures import Lab, lab_config  # noqa: E402
from tests.lmtp_standalone import reachable_tmp_dir  # noqa: E402

COMMANDS = ("NOOP", "SELECT", "FETCH_HEADERS", "STORE_CHANGE", "APPEND_200B", "SEARCH_UNSEEN")
PORTS = {"local": 11143, "remote": 11144}  # inside the node's namespace: nothing else there
SEED = 20


def message(n: int, size: int) -> bytes:
    head = f"From: a@example.org\r\nTo: alice@example.org\r\nSubject: ab {n}\r\n\r\n".encode()
    return head + b"x" * max(0, size - len(head) - 2) + b"\r\n"


def session(host: str, port: int, samples: int) -> dict[str, list[float]]:
    client = imaplib.IMAP4(host, port, timeout=30)
    toggle = itertools.cycle(("+FLAGS", "-FLAGS"))
    small = message(0, 200)
    calls: dict[str, Callable[[], tuple[str, object]]] = {
        "NOOP": client.noop,
        "SELECT": lambda: client.select("INBOX"),
        "FETCH_HEADERS": lambda: client.fetch("1:5", "(FLAGS BODY.PEEK[HEADER])"),
        "STORE_CHANGE": lambda: client.store("1", next(toggle), "\\Flagged"),  # a write each time
        "APPEND_200B": lambda: client.append("INBOX", None, None, small),
        "SEARCH_UNSEEN": lambda: client.search(None, "UNSEEN"),
    }
    out: dict[str, list[float]] = {}
    try:
        client.login("alice", "alice-password")
        client.select("INBOX")
        for name in COMMANDS:
            times = []
            for _ in range(samples):
                t0 = time.perf_counter()
                status, reply = calls[name]()
                times.append(time.perf_counter() - t0)
                if status != "OK":
                    raise RuntimeError(f"{name}: {reply!r}")
            out[name] = times
    finally:
        client.logout()
    return out


def loadavg() -> str:
    return " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])


@contextlib.contextmanager
def extra_imapds(lab: AgentLab, node: str, epoch: int) -> Iterator[None]:
    cfg = lab.cfg
    cert, key = tls_files(cfg)
    procs = []
    try:
        for variant, port in PORTS.items():
            spec = services.imapd_service(
                store_address(cfg, node),
                epoch,
                listen=f"{cfg.floating_ip.address.ip}:{port}",
                tls_listen="",
                cert=cert,
                key=key,
                allow_plaintext_login=True,
                append_limit=cfg.store.max_message_size,
                store_data=shared_store_dir(cfg.storage) if variant == "local" else None,
            )
            env = {**services.service_env("imapd"), "PYTHONPATH": str(ROOT)}
            log = open(lab.tmp / f"imapd-{variant}.log", "wb")  # noqa: SIM115 - the child's
            procs.append(netns.popen_in_netns(cfg.node(node).namespace, spec.argv, stdout=log, stderr=log, env=env))
            log.close()
        for port in PORTS.values():
            lab.wait_for(f"imapd on {port}", lambda p=port: greets(str(cfg.floating_ip.address.ip), p, b"* OK"))  # type: ignore[misc]
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except Exception:
                proc.kill()
                proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("ha_local_ab: needs root (namespaces)", file=sys.stderr)
        return 2
    result: dict[str, object] = {"load_before": loadavg(), "rounds": args.rounds, "samples": args.samples}
    with reachable_tmp_dir() as tmp:
        (tmp / "base").mkdir()
        lab_base = Lab(lab_config(tmp / "base"))
        lab_base.up()
        try:
            lab = AgentLab(lab_base, tmp, f"/ab-{uuid.uuid4().hex[:12]}")
            try:
                first = lab.names[0]
                lab.start_agent(first)
                lab.wait_for(f"{first} serving", lambda: lab.active() == first and lab.serves(), timeout=60)
                admin = Admin.connect(f"unix:{store_socket_path(lab.cfg, first)}")
                try:
                    admin.add_user("alice", "alice-password", 0)
                finally:
                    admin.close()
                leader = lab.snapshot().leader
                assert leader is not None
                host = str(lab.cfg.floating_ip.address.ip)
                with extra_imapds(lab, first, leader.epoch):
                    seed = imaplib.IMAP4(host, PORTS["remote"], timeout=30)
                    seed.login("alice", "alice-password")
                    for n in range(SEED):
                        seed.append("INBOX", None, None, message(n + 1, 2048))
                    seed.logout()
                    runs: dict[str, dict[str, list[dict[str, float]]]] = {c: {v: [] for v in PORTS} for c in COMMANDS}
                    for r in range(args.rounds):
                        order = ("local", "remote") if r % 2 == 0 else ("remote", "local")
                        for variant in order:
                            for name, times in session(host, PORTS[variant], args.samples).items():
                                runs[name][variant].append(
                                    {
                                        "p50_ms": round(statistics.median(times) * 1000, 3),
                                        "p99_ms": round(sorted(times)[int(len(times) * 0.99) - 1] * 1000, 3),
                                    }
                                )
                    summary: dict[str, object] = {}
                    for name in COMMANDS:
                        med = {v: statistics.median(x["p50_ms"] for x in runs[name][v]) for v in PORTS}
                        summary[name] = {
                            "local_p50_ms": med["local"],
                            "remote_p50_ms": med["remote"],
                            "ratio": round(med["local"] / med["remote"], 3),
                            "runs": runs[name],
                        }
                    result["commands"] = summary
            finally:
                lab.stop()
        finally:
            lab_base.down()
    result["load_after"] = loadavg()
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
