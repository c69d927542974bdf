"""Storage full: a standalone node whose data directory is a small tmpfs.

The demo cluster's shared storage is a plain directory, so this scenario
brings its own node: `mailha standalone` on a size-limited tmpfs, the IMAP
workload plus LMTP deliveries of 16 KiB messages, and a fault that fills the
filesystem with a ballast file for a few seconds, then deletes it. While
full, APPEND must get NO and deliveries a 4xx, never an acknowledgement of
something lost, and nothing may be half-written: the final read (through
the store) checks every stored message's size and trailer line. After the
ballast goes, writes must succeed again.

Everything is undone in `finally`: the standalone process group is
stopped, the tmpfs unmounted and the temporary directory removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import grpc

from chaos.checker import Violation, check
from chaos.history import Event, EventType, HistoryWriter, Op, pair, read_history
from chaos.nemesis import recorded_fault
from chaos.report import ScenarioReport
from chaos.scenarios import recovers
from chaos.store_read import final_read_store
from chaos.workload import Workload, WorkloadConfig, lmtp_available, prepare_mailboxes
from mailha_api import store_pb2, store_pb2_grpc

MIB = 1024 * 1024
TMPFS_BYTES = 128 * MIB
MESSAGE_BYTES = 16 * 1024  # small enough that the run's own mail never fills the tmpfs
HOLD = 5.0  # seconds the filesystem stays full
GAP = 4.0
ROUNDS = 4
USER = "chaos"
PASSWORD = "chaos-workload"
ADDRESS = "chaos@mailha.test"


def temporary_refusals_only(events: list[Event]) -> list[Violation]:
    """A full disk is a temporary condition: LMTP must answer 4xx (e.g. 452 4.3.1) so the MTA
    retries; a 5xx makes it bounce the mail back to its sender."""
    violations = []
    for op in pair(events):
        if op.f is Op.DELIVER and op.outcome is EventType.FAIL:
            error = op.event().str_("error") or ""
            parts = error.split()
            if len(parts) == 2 and parts[0] in ("MAIL", "RCPT", "DATA") and parts[1].startswith("5"):
                violations.append(
                    Violation(
                        "permanent-refusal",
                        f"{op.invoke.str_('chaos_id')}: refused with {error} (a bounce) while the disk was full",
                        (op.event().index,),
                    )
                )
    if len(violations) > 3:
        first = violations[0]
        return [Violation(first.rule, f"{first.detail}; and {len(violations) - 1} more like it", first.events)]
    return violations


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fill(path: pathlib.Path, deadline: float) -> int:
    """Write zeros into `path` until the filesystem is full; return the bytes written."""
    written = 0
    chunk = b"\0" * MIB
    with open(path, "wb", buffering=0) as f:
        while time.monotonic() < deadline:
            try:
                written += f.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                # Fill the last partial megabyte too.
                for size in (64 * 1024, 4096):
                    try:
                        while True:
                            written += f.write(chunk[:size])
                    except OSError as small:
                        if small.errno != errno.ENOSPC:
                            raise
                return written
    return written


def _create_user(address: str, timeout: float = 30.0) -> None:

    with grpc.insecure_channel(address) as channel:
        stub = store_pb2_grpc.MailStoreStub(channel)
        epoch = stub.GetEpoch(store_pb2.GetEpochRequest(), timeout=timeout, wait_for_ready=True).epoch
        for call in (
            lambda: stub.CreateUser(store_pb2.CreateUserRequest(epoch=epoch, name=USER, password=PASSWORD), timeout=10),
            lambda: stub.AddAddress(store_pb2.AddAddressRequest(epoch=epoch, address=ADDRESS, user=USER), timeout=10),
        ):
            try:
                call()
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(15)


def run_storage_full(seconds: float, out_dir: pathlib.Path, stop: threading.Event) -> ScenarioReport:
    t0 = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    run_id = f"storage-full-{int(time.time())}"
    path = out_dir / f"{run_id}.jsonl"
    history = HistoryWriter(path)
    base = pathlib.Path(tempfile.mkdtemp(prefix="mailha-chaos-full-"))
    os.chmod(base, 0o711)  # the services run as the service user when started as root
    data = base / "data"
    data.mkdir()
    mounted = False
    proc: subprocess.Popen[bytes] | None = None
    workload: Workload | None = None
    error: str | None = None
    store = f"unix:{data / 'run' / 'store.sock'}"
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0700", "tmpfs", str(data)],
            check=True,
            capture_output=True,
            timeout=30,
        )
        mounted = True
        port, imap_port, imaps_port = _free_port(), _free_port(), _free_port()
        with open(base / "standalone.log", "ab") as log:
            proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "mailha.cli", "standalone", "--data", str(data)),
                    *("--lmtp-listen", f"127.0.0.1:{port}", "--max-message-size", str(4 * MIB)),
                    *("--imap-listen", f"127.0.0.1:{imap_port}", "--imaps-listen", f"127.0.0.1:{imaps_port}"),
                    *("--web-listen", ""),  # no web app: it would take the fixed 8443
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _create_user(store)
        deadline = time.monotonic() + 30
        while not lmtp_available("127.0.0.1", port, timeout=1.0):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"standalone LMTP on 127.0.0.1:{port} did not come up (see {base}/standalone.log)")
            time.sleep(0.2)
        cfg = WorkloadConfig(
            host="127.0.0.1",
            port=imap_port,
            tls="starttls",
            user=USER,
            password=PASSWORD,
            mailboxes=(f"{run_id}-a",),
            lmtp_port=port,
            lmtp_rcpt=ADDRESS,
            run_id=run_id,
            clients=4,
            deliver_bytes=MESSAGE_BYTES,
            op_timeout=15.0,
        )
        prepare_mailboxes(cfg, timeout=30)
        workload = Workload(cfg, history)
        workload.start(seconds + 60.0)
        stop.wait(GAP)
        end = time.monotonic() + seconds
        for _ in range(ROUNDS):
            if stop.is_set() or time.monotonic() >= end:
                break
            ballast = data / "ballast"
            with recorded_fault(history, "storage-full", bytes=TMPFS_BYTES) as st:
                try:
                    _fill(ballast, time.monotonic() + 30)
                    st.injected()
                    stop.wait(HOLD)
                finally:
                    ballast.unlink(missing_ok=True)
            stop.wait(GAP)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        (data / "ballast").unlink(missing_ok=True)
        if workload is not None:
            workload.stop()
            workload.join(60)
        try:
            if workload is not None and proc is not None:
                final_read_store(
                    store,
                    user=USER,
                    run_id=run_id,
                    history=history,
                    mailboxes=workload.mailboxes(),
                    timeout=60,
                    bodies=True,
                )
        finally:
            if proc is not None:
                _stop(proc)
            # Keep the node's logs next to the history before the tmpfs goes.
            logs = out_dir / f"{run_id}-logs"
            for log_file in [base / "standalone.log", *sorted((data / "log").glob("*.log"))]:
                with contextlib.suppress(OSError):
                    logs.mkdir(exist_ok=True)
                    shutil.copy(log_file, logs / log_file.name)
            if mounted:
                subprocess.run(["umount", str(data)], check=False, capture_output=True, timeout=30)
            shutil.rmtree(base, ignore_errors=True)
            history.close()
    events = read_history(path)
    result = check(events)
    extra = recovers(events, 0.0) + temporary_refusals_only(events)
    if extra:
        result = dataclasses.replace(result, violations=(*result.violations, *extra))
    return ScenarioReport("storage-full", result, time.monotonic() - t0, str(path), error)
