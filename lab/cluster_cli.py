"""`mailha zk up|down|status` and `mailha cluster up|down`: thin faces over
lab.zk_ensemble and lab.cluster."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

from nodeconf.config import ConfigError, load

DEFAULT_CONFIG = pathlib.Path("cluster.yaml")


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=pathlib.Path, default=DEFAULT_CONFIG, help="cluster.yaml (default ./cluster.yaml)")


def register(sub: Any) -> None:
    zk: argparse.ArgumentParser = sub.add_parser("zk", help="the cluster's 3-member ZooKeeper ensemble")
    zk_sub = zk.add_subparsers(dest="zk_command", metavar="ACTION", required=True)
    up = zk_sub.add_parser("up", help="start every member; return when all serve")
    _add_config(up)
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the ensemble")
    up.set_defaults(func=_zk_up)
    down = zk_sub.add_parser("down", help="stop every member (idempotent; works after a crash)")
    _add_config(down)
    down.set_defaults(func=_zk_down)
    status = zk_sub.add_parser("status", help="ruok/srvr of every member")
    _add_config(status)
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.set_defaults(func=_zk_status)

    cluster: argparse.ArgumentParser = sub.add_parser(
        "cluster", help="the demo cluster: namespaces, ZooKeeper, one agent per node"
    )
    cl_sub = cluster.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    cup = cl_sub.add_parser("up", help="build the topology, start ZooKeeper and the agents, create a demo user")
    _add_config(cup)
    cup.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for IMAP on the floating IP")
    cup.set_defaults(func=_cluster_up)
    cdown = cl_sub.add_parser("down", help="stop everything and remove namespaces, links and addresses")
    _add_config(cdown)
    cdown.set_defaults(func=_cluster_down)


def _load(path: pathlib.Path) -> Any:
    try:
        return load(path)
    except ConfigError as exc:
        print(f"mailha: {exc}", file=sys.stderr)
        return None


def _zk_up(args: argparse.Namespace) -> int:
    from lab.zk_ensemble import Ensemble, EnsembleError

    cfg = _load(args.config)
    if cfg is None:
        return 2
    try:
        statuses = Ensemble(cfg.zookeeper).start(args.timeout)
    except EnsembleError as exc:
        print(f"mailha zk up: {exc}", file=sys.stderr)
        return 1
    for st in statuses:
        print(f"member {st.id} at {st.address}: {st.mode} (pid {st.pid})")
    return 0


def _zk_down(args: argparse.Namespace) -> int:
    from lab.zk_ensemble import Ensemble

    cfg = _load(args.config)
    if cfg is None:
        return 2
    stopped = Ensemble(cfg.zookeeper).stop()
    print(f"stopped {stopped} ZooKeeper member(s)")
    return 0


def _zk_status(args: argparse.Namespace) -> int:
    from lab.zk_ensemble import Ensemble

    cfg = _load(args.config)
    if cfg is None:
        return 2
    statuses = Ensemble(cfg.zookeeper).status()
    if args.json:
        print(json.dumps({"members": [{**st.__dict__, "serving": st.serving} for st in statuses]}))
    else:
        for st in statuses:
            state = st.mode if st.serving else ("not serving" if st.ok else "down")
            print(f"member {st.id} at {st.address}: {state}" + (f" (pid {st.pid})" if st.pid else ""))
    return 0 if all(st.serving for st in statuses) else 1


def _cluster_up(args: argparse.Namespace) -> int:
    from lab.cluster import ClusterError, cluster_up

    cfg = _load(args.config)
    if cfg is None:
        return 2
    try:
        cluster_up(cfg, timeout=args.timeout, out=sys.stdout)
    except ClusterError as exc:
        print(f"mailha cluster up: {exc}", file=sys.stderr)
        return 1
    return 0


def _cluster_down(args: argparse.Namespace) -> int:
    from lab.cluster import cluster_down

    cfg = _load(args.config)
    if cfg is None:
        return 2
    cluster_down(cfg, out=sys.stdout)
    return 0
