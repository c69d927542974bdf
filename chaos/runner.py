"""Running one scenario end to end: workload + samplers + nemesis, heal, read back, check.

Order, for every scenario:
 1. wait for service on the floating IP; create the workload's user and
    mailboxes (fresh mailboxes per run, so runs never judge each other);
 2. start the samplers (floating-IP holders, each node's store epoch) and
    the workload clients;
 3. inject the scenario's fault `rounds` times (bounded by the deadline),
    with `gap` seconds of plain workload between injections;
 4. in a `finally`: stop the nemesis, heal everything, stop the workload;
 5. wait for service, read every mailbox back, read the agents' history;
 6. check the history and the scenario's policy.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from chaos import nemesis
from chaos.agent_intervals import writer_intervals
from chaos.checker import check
from chaos.cluster_target import ClusterTarget
from chaos.history import EventType, HistoryWriter, JsonValue, Op, read_history
from chaos.report import ScenarioReport
from chaos.scenarios import Scenario
from chaos.store_read import final_read_store
from chaos.workload import Workload, WorkloadConfig, final_read, lmtp_available, prepare_mailboxes
from nodeconf.config import ClusterConfig

log = logging.getLogger("mailha.chaos")

USER = "chaos"
PASSWORD = "chaos-workload"
ADDRESS = "chaos@mailha.test"
SAMPLE_INTERVAL = 0.25
SERVICE_TIMEOUT = 90.0
FINAL_READ_TIMEOUT = 90.0
WARMUP = 2.0


@dataclass(frozen=True)
class RunOptions:
    seconds: float  # upper bound on the fault phase of each scenario
    out_dir: pathlib.Path  # histories go here


class Sampler:
    """Background observations: who holds the floating IP, each node's stored epoch."""

    def __init__(self, target: ClusterTarget, history: HistoryWriter) -> None:
        self.target = target
        self.history = history
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="chaos-sampler", daemon=True)

    def _sample(self, f: Op, invoke: dict[str, JsonValue], read: Callable[[], dict[str, JsonValue] | None]) -> None:
        op_id = self.history.invoke("sampler", f, invoke)
        try:
            value = read()
        except Exception as exc:
            self.history.complete("sampler", f, op_id, EventType.FAIL, {"error": str(exc)[:200]})
            return
        if value is None:
            self.history.complete("sampler", f, op_id, EventType.FAIL, {"error": "nothing there"})
        else:
            self.history.complete("sampler", f, op_id, EventType.OK, value)

    def _run(self) -> None:
        nodes = [n.name for n in self.target.cfg.nodes]
        while not self.stop.is_set():
            self._sample(Op.VIP, {}, lambda: {"holders": list(self.target.vip_holders())})
            for node in nodes:

                def epoch(node: str = node) -> dict[str, JsonValue] | None:
                    e = self.target.store_epoch(node)
                    return None if e is None else {"epoch": e}

                self._sample(Op.EPOCH, {"node": node}, epoch)
            self.stop.wait(SAMPLE_INTERVAL)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def run_scenario(cfg: ClusterConfig, scenario: Scenario, options: RunOptions, stop: threading.Event) -> ScenarioReport:
    target = ClusterTarget(cfg)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    run_id = f"{scenario.name}-{int(time.time())}"
    path = options.out_dir / f"{run_id}.jsonl"
    history = HistoryWriter(path)
    t0 = time.monotonic()
    node_names = [n.name for n in cfg.nodes]
    error: str | None = None
    sampler: Sampler | None = None
    workload: Workload | None = None
    ctx = nemesis.NemesisContext(target, history, stop=stop, storage_path=cfg.storage.path)
    wcfg = WorkloadConfig(
        host=str(cfg.floating_ip.address.ip),
        port=cfg.ports.imap,
        tls="starttls",
        user=USER,
        password=PASSWORD,
        run_id=run_id,
        mailboxes=(f"{run_id}-a", f"{run_id}-b"),
        clients=scenario.clients,
        op_timeout=15.0 if scenario.big_append_bytes else 8.0,
        big_append_bytes=scenario.big_append_bytes,
        lmtp_rcpt=ADDRESS,
        mta_retry=scenario.mta_retry,
        deliver_weight=0.5 if scenario.mta_retry else 0.08,
    )
    try:
        active = target.wait_active(SERVICE_TIMEOUT)
        if active is None:
            raise nemesis.NemesisError(f"no service on the floating IP within {SERVICE_TIMEOUT:.0f} s")
        target.create_user(active, USER, PASSWORD, ADDRESS)
        if lmtp_available(wcfg.host, cfg.ports.lmtp):
            wcfg = dataclasses.replace(wcfg, lmtp_port=cfg.ports.lmtp)
        if not target.imap_serves():
            # No IMAP front end in this cluster (yet): LMTP deliveries only, read back through the store.
            wcfg = dataclasses.replace(wcfg, imap=False)
        if not wcfg.imap and wcfg.lmtp_port is None:
            raise nemesis.NemesisError("neither IMAP nor LMTP answers on the floating IP")
        prepare_mailboxes(wcfg)
        sampler = Sampler(target, history)
        sampler.start()
        workload = Workload(wcfg, history)
        deadline = time.monotonic() + options.seconds
        workload.start(options.seconds + WARMUP + 60.0)  # stopped explicitly after the faults
        ctx.sleep(WARMUP)
        for _ in range(scenario.rounds):
            if stop.is_set() or time.monotonic() >= deadline:
                break
            scenario.run_fault(ctx)
            ctx.sleep(scenario.gap)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.warning("%s: %s", scenario.name, error)
    finally:
        problems = nemesis.heal_everything(target, node_names)
        if problems:
            error = (error + "; " if error else "") + "heal: " + "; ".join(problems)
        if workload is not None:
            ctx.sleep(scenario.gap)  # some service after the last heal, for the recovery policy
            workload.stop()
            workload.join(60)
    try:
        if workload is not None:
            active = target.wait_active(SERVICE_TIMEOUT)
            if wcfg.imap:
                final_read(wcfg, history, workload.mailboxes(), FINAL_READ_TIMEOUT)
            elif active is not None:
                final_read_store(
                    target.store_address(active),
                    user=USER,
                    run_id=run_id,
                    history=history,
                    mailboxes=workload.mailboxes(),
                    timeout=FINAL_READ_TIMEOUT,
                )
            try:
                intervals = writer_intervals(target.agent_history())
                history.record("probe", Op.AGENT_HISTORY, {"intervals": [i.to_json() for i in intervals]})
            except Exception as exc:
                history.record("probe", Op.AGENT_HISTORY, {"error": str(exc)[:200]}, EventType.FAIL)
    finally:
        if sampler is not None:
            sampler.close()
        history.close()
    events = read_history(path)
    result = check(events)
    extra = scenario.policy(events, cfg.zookeeper.session_timeout)
    if extra:
        result = dataclasses.replace(result, violations=(*result.violations, *extra))
    return ScenarioReport(scenario.name, result, time.monotonic() - t0, str(path), error)
