"""`mailha bench failover` against a cluster of its own, torn down afterwards.

Run as root from the repository: `.venv/bin/python scripts/failover_lab.py [--trials 5]
[--switchovers 5] [--out FILE]`. It writes a throwaway cluster config
(tests/ha_lab_fixtures.py `lab_config`: a free /28 of 192.0.2.0/24, its own bridge,
namespace and node names, free ZooKeeper ports; data, ZooKeeper and runtime directories
in a fresh temporary directory; the service user `mailha`, as the demo cluster runs), brings
it up with `mailha cluster up`'s own code (lab/cluster.py: topology, a 3-member ensemble,
one agent per node), runs the bench (bench/failover_bench.py) and, whatever happened,
`cluster down` and removes the directory. /var/lib/mailha, /run/mailha and the repo's
cluster.yaml are not touched, so it runs beside a demo cluster and other labs.

Prints the bench's JSON summary with the load average before and after and the
commit of the tree it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from types import FrameType

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.failover_bench import run_bench  # noqa: E402
from lab.cluster import ClusterError, cluster_down, cluster_up  # noqa: E402
from tests.ha_lab_fixtures import lab_config  # noqa: E402
from tests.lmtp_standalone import reachable_tmp_dir  # noqa: E402


def loadavg() -> str:
    return " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks: cluster down, directory removed


def _described_tree() -> str:
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True
    )
    dirty = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD"], check=False, capture_output=True)
    return head.stdout.strip() + (" + uncommitted changes" if dirty.returncode else "")


def _keep_logs(runtime_dir: pathlib.Path, dest: pathlib.Path) -> None:
    """Each node's agent.log and its services' logs (runtime_dir/NODE/log/), under dest/NODE/."""
    for node_dir in sorted(p for p in runtime_dir.iterdir() if p.is_dir() and p.name != "tls"):
        logs = [node_dir / "agent.log", *sorted((node_dir / "log").glob("*"))]
        for log in logs:
            if log.is_file():
                target = dest / node_dir.name / log.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(log, target)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=5, help="SIGKILL trials")
    parser.add_argument("--switchovers", type=int, default=5, help="switchover trials")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="also write the summary here")
    parser.add_argument(
        "--keep-logs", type=pathlib.Path, default=None, help="copy the agents' and services' logs here before cleanup"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("failover_lab: needs root (namespaces, addresses)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_before = loadavg()
    status = 1
    with reachable_tmp_dir() as tmp:
        cfg = lab_config(tmp, service_user="mailha")
        bench_out = tmp / "failover.json"
        try:
            cluster_up(cfg, timeout=120.0, out=sys.stderr)
            status = run_bench(cfg, trials=args.trials, switchovers=args.switchovers, as_json=False, out=bench_out)
            summary = json.loads(bench_out.read_text())
        except ClusterError as exc:
            print(f"failover_lab: {exc}", file=sys.stderr)
            return 1
        finally:
            cluster_down(cfg, out=sys.stderr)
            if args.keep_logs is not None:
                _keep_logs(cfg.runtime_dir, args.keep_logs)
    summary = {
        "tree": _described_tree(),
        "started": started,
        "load_before": load_before,
        "load_after": loadavg(),
        **summary,
    }
    text = json.dumps(summary, indent=1)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
