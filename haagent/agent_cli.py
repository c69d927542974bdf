"""`mailha agent|status|switchover|pause|resume|history`: thin faces over
haagent.agent and haagent.operator. HaAgentError becomes one line on stderr
and status 1 in guard_ha_errors, and only there (`mailha bench failover`
uses it too)."""

from __future__ import annotations

import argparse
import json
import logging
import math
import pathlib
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from haagent.errors import HaAgentError
from nodeconf import service_user
from nodeconf.config import ConfigError, load
from nodeconf.service_process import start_service_process

DEFAULT_CONFIG = pathlib.Path("cluster.yaml")


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=pathlib.Path, default=DEFAULT_CONFIG, help="cluster.yaml (default ./cluster.yaml)")
    p.add_argument("--zk-hosts", default=None, help="host:port,... of ZooKeeper instead of the configured members")


def register(sub: Any) -> None:
    a = sub.add_parser("agent", help="run the HA agent of one node (inside its namespace)")
    a.add_argument("--config", type=pathlib.Path, default=DEFAULT_CONFIG, help="cluster.yaml")
    a.add_argument("--node", required=True, help="this node's name in cluster.yaml")
    a.set_defaults(func=_agent)

    s = sub.add_parser("status", help="active node, epoch, nodes, floating IP holder, ensemble health")
    _config_arg(s)
    s.add_argument("--json", action="store_true", help="one JSON object")
    s.set_defaults(func=guard_ha_errors(_status))

    w = sub.add_parser("switchover", help="planned move of the service to a standby")
    _config_arg(w)
    w.add_argument("--to", default=None, help="target node (default: any healthy standby)")
    w.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the candidate")
    w.add_argument("--json", action="store_true", help="one JSON object")
    w.set_defaults(func=guard_ha_errors(_switchover))

    p = sub.add_parser("pause", help="maintenance mode: no automatic failover")
    _config_arg(p)
    p.set_defaults(func=guard_ha_errors(lambda args: _pause(args, True)))
    r = sub.add_parser("resume", help="leave maintenance mode")
    _config_arg(r)
    r.set_defaults(func=guard_ha_errors(lambda args: _pause(args, False)))

    h = sub.add_parser("history", help="every agent transition with reason and downtime")
    _config_arg(h)
    h.add_argument("--json", action="store_true", help="one JSON object")
    h.set_defaults(func=guard_ha_errors(_history))


def _load(path: pathlib.Path) -> Any:
    return load(path)


def guard_ha_errors(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:

        # kazoo logs every failed connection attempt; the one-line error says enough.
        logging.getLogger("kazoo").setLevel(logging.CRITICAL)
        try:
            return fn(args)
        except (HaAgentError, ConfigError) as exc:
            print(f"mailha {args.command}: {exc}", file=sys.stderr)
            return 1

    return run


def _agent(args: argparse.Namespace) -> int:
    from haagent.agent import main

    start_service_process()

    try:
        cluster = _load(args.config)
        # Refuse now, with the reason, rather than in the loop.
        cluster.zookeeper.auth_password()
        user = service_user.resolve(cluster.service_user)
        if user is not None:
            user.check_reachable(cluster.storage.path)
            user.check_reachable(cluster.runtime_dir / args.node)
    except (ConfigError, service_user.ServiceUserError) as exc:
        print(f"mailha agent: {exc}", file=sys.stderr)
        return 2
    return main(cluster, args.node)


def _status(args: argparse.Namespace) -> int:
    from haagent.operator import cluster_status

    st = cluster_status(_load(args.config), args.zk_hosts)
    failed = 1 if st["zookeeper_error"] else 0
    if args.json:
        print(json.dumps(st, sort_keys=True))
        return failed
    if failed:
        print(f"ZooKeeper unreachable: {st['zookeeper_error']}")
    since = st["since"]
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(since))) if isinstance(since, float) else "-"
    print(
        f"active: {st['active'] or 'none'}  epoch: {st['epoch']}  since: {when}" + ("  PAUSED" if st["paused"] else "")
    )
    holders = st["floating_ip_holder"]
    held = ", ".join(holders) if isinstance(holders, list) and holders else "nobody"
    print(f"floating IP {st['floating_ip']} held by: {held}")
    nodes = st["nodes"]
    assert isinstance(nodes, list)
    for n in nodes:
        print(f"  {n['name']:<10} {n['state']:<11} health {n['health']:<8} epoch {n['epoch']:<4} {n['says']}")
    ens = st["ensemble"]
    assert isinstance(ens, dict)
    serving = sum(1 for m in ens["members"] if m["serving"])
    print(
        f"ZooKeeper: {serving}/{len(ens['members'])} members serving ({'healthy' if ens['healthy'] else 'NO QUORUM'})"
    )
    return failed


def _switchover(args: argparse.Namespace) -> int:
    from haagent.operator import switchover

    result = switchover(_load(args.config), args.to, hosts=args.zk_hosts, timeout=args.timeout)
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        gap = "unknown" if math.isnan(result.unavailable_s) else f"{result.unavailable_s:.3f} s"
        print(
            f"switched over from {result.source} to {result.target} (epoch {result.epoch}) "
            f"in {result.took_s:.3f} s; service unavailable for {gap}"
        )
    return 0


def _pause(args: argparse.Namespace, paused: bool) -> int:
    from haagent.operator import set_paused

    set_paused(_load(args.config), paused, args.zk_hosts)
    print("maintenance mode on: no automatic failover" if paused else "maintenance mode off")
    return 0


def _history(args: argparse.Namespace) -> int:
    from haagent.operator import read_history

    entries = read_history(_load(args.config), args.zk_hosts)
    if args.json:
        print(json.dumps({"history": [asdict(e) for e in entries]}))
        return 0
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.time)) + f".{int(e.time % 1 * 1000):03d}"
        down = f"  downtime {e.downtime_s:.3f} s" if e.downtime_s is not None else ""
        print(f"{when}  {e.node:<10} {e.from_state:>10} -> {e.to_state:<10} epoch {e.epoch:<4} {e.reason}{down}")
    return 0
