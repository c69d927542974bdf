"""Per-command cost inside imapd: Python calls and CPU per command, one session (issue 13).

    python -m bench.command_cost [--commands 500] [--only NOOP,FETCH_HEADERS]

Starts a throwaway store and an imapd beside it (local reads, as `mailha bench
compare` runs it) whose process toggles cProfile on SIGUSR2, seeds one user with
the compare benchmark's 60 messages, and for each command runs an imaplib loop:
first unprofiled, reading imapd's CPU time from /proc (all threads, ns), then
profiled, counting every function call cProfile sees (Python and C) from the
socket read to the write. The call count is deterministic: a change that adds
work to every command shows in it whatever the machine's load, where timings
on a shared machine do not. Both figures are per command; the profile of each
command is kept beside the JSON result (`pstats` files) for a closer look.
The store process's CPU over the unprofiled loop is given beside imapd's
(`store_cpu_us`: what the store spends on the command's writes and reads).
"""

from __future__ import annotations

import argparse
import cProfile
import imaplib
import json
import os
import pathlib
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from types import FrameType
from typing import Final

import trio

from bench import compare
from bench.imap_bench import make_message
from imapd import cli as imapd_cli
from store.client import StoreClient

ROOT: Final = pathlib.Path(__file__).resolve().parent.parent
COMMANDS: Final = (
    "NOOP",
    "SELECT",
    "FETCH_HEADERS",
    "FETCH_BODY",
    "FETCH_BODY_1MB",
    "STORE",
    "SEARCH_SUBJECT",
    "SEARCH_UNSEEN",
    "APPEND_200B",  # last: each one grows the INBOX the others read
)
LARGE: Final = 1024 * 1024  # FETCH_BODY_1MB's message, appended after the seed (bench compare fetches one)
_WARMUP: Final = 20


def _child(argv: list[str]) -> int:
    """imapd, with SIGUSR2 starting and stopping a profile (dumped to $MAILHA_PROFILE_OUT.N)."""
    state: dict[str, object] = {"profile": None, "dumped": 0}
    out = os.environ["MAILHA_PROFILE_OUT"]

    def toggle(_signum: int, _frame: FrameType | None) -> None:
        profile = state["profile"]
        if profile is None:
            started = cProfile.Profile()
            started.enable()
            state["profile"] = started
            return
        assert isinstance(profile, cProfile.Profile)
        profile.disable()
        dumped = state["dumped"]
        assert isinstance(dumped, int)
        profile.dump_stats(f"{out}.{dumped}")
        state["profile"], state["dumped"] = None, dumped + 1

    signal.signal(signal.SIGUSR2, toggle)
    parser = argparse.ArgumentParser(prog="imapd-child")
    imapd_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


def _cpu_seconds(pid: int) -> float:
    """CPU time of every thread of `pid` so far (schedstat: nanoseconds)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(pathlib.Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended meanwhile
    return total / 1e9


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _calls(client: imaplib.IMAP4) -> dict[str, Callable[[], tuple[str, object]]]:
    small = make_message(1, 200)
    return {
        "NOOP": client.noop,
        "SELECT": lambda: client.select("INBOX"),
        "FETCH_HEADERS": lambda: client.fetch("1:5", "(FLAGS BODY.PEEK[HEADER])"),
        "FETCH_BODY": lambda: client.fetch(str(compare.SEED), "(BODY.PEEK[])"),
        "FETCH_BODY_1MB": lambda: client.fetch(str(compare.SEED + 1), "(BODY.PEEK[])"),
        "STORE": lambda: client.store("1", "+FLAGS", "\\Seen"),
        "SEARCH_SUBJECT": lambda: client.search(None, "SUBJECT", "message"),
        "SEARCH_UNSEEN": lambda: client.search(None, "UNSEEN"),
        # imaplib's way: the command with {200}, the literal after the continuation, then CRLF.
        "APPEND_200B": lambda: client.append("INBOX", None, None, small),
    }


def measure(commands: int, only: tuple[str, ...], keep: pathlib.Path | None) -> dict[str, dict[str, float]]:
    directory = pathlib.Path(tempfile.mkdtemp(prefix="mailha-command-cost-"))
    address = f"unix:{directory / 'store.sock'}"
    procs: list[subprocess.Popen[bytes]] = []

    def start(args: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(directory / log, "ab") as out:
            env = {**os.environ, "MAILHA_PROFILE_OUT": str(directory / "profile")}
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        procs.append(proc)
        return proc

    results: dict[str, dict[str, float]] = {}
    try:
        data = directory / "data"
        store_proc = start(
            [sys.executable, "-m", "mailha.cli", "store", "serve", "--data", str(data), "--listen", address],
            "store.log",
        )
        with StoreClient(address) as store:
            store.wait_ready(30)
            epoch = store.epoch()
            store.create_user(compare.SOLO, compare.PASSWORD)
        port = _free_port()
        imapd_argv = ["imapd", "serve", "--store", address, "--epoch", str(epoch), "--listen", f"127.0.0.1:{port}"]
        imapd_argv += ["--allow-plaintext-login", "--store-data", str(data)]
        imapd = start(
            [sys.executable, "-m", "bench.command_cost", "--imapd-child", *imapd_argv],
            "imapd.log",
        )
        _wait_listening(port, imapd, directory)
        trio.run(compare._seed_user, port, compare.SOLO)
        client = imaplib.IMAP4("127.0.0.1", port)
        try:
            client.login(compare.SOLO, compare.PASSWORD)
            client.append("INBOX", None, None, make_message(compare.SEED, LARGE))
            client.select("INBOX")
            calls = _calls(client)
            for dumped, name in enumerate(only):
                dump = directory / f"profile.{dumped}"
                results[name] = _one(calls[name], name, commands, imapd, store_proc, dump=dump)
                if keep is not None:
                    shutil.copy(directory / f"profile.{dumped}", keep / f"command-cost-{name}.pstats")
        finally:
            client.logout()
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)
    return results


def _one(
    call: Callable[[], tuple[str, object]],
    name: str,
    commands: int,
    imapd: subprocess.Popen[bytes],
    store: subprocess.Popen[bytes],
    *,
    dump: pathlib.Path,
) -> dict[str, float]:
    def run(count: int) -> None:
        for _ in range(count):
            status, reply = call()
            if status != "OK":
                raise RuntimeError(f"{name} failed: {reply!r}")

    run(_WARMUP)
    before, store_before = _cpu_seconds(imapd.pid), _cpu_seconds(store.pid)
    run(commands)
    cpu = (_cpu_seconds(imapd.pid) - before) / commands
    store_cpu = (_cpu_seconds(store.pid) - store_before) / commands
    imapd.send_signal(signal.SIGUSR2)
    time.sleep(0.2)  # the handler runs between bytecodes of imapd's loop, which is idle
    run(commands)
    time.sleep(0.2)
    imapd.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 10
    while not dump.exists() or dump.stat().st_size == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("imapd wrote no profile")
        time.sleep(0.05)
    time.sleep(0.2)  # dump_stats may still be writing
    stats = pstats.Stats(str(dump))
    calls = round(stats.total_calls / commands, 1)  # type: ignore[attr-defined]
    return {"calls": calls, "cpu_us": round(cpu * 1e6, 1), "store_cpu_us": round(store_cpu * 1e6, 1)}


def _wait_listening(port: int, imapd: subprocess.Popen[bytes], directory: pathlib.Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if imapd.poll() is not None:
            raise RuntimeError(f"imapd exited: {(directory / 'imapd.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
                if conn.recv(100).startswith(b"* OK"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("imapd did not start listening")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--imapd-child"]:
        return _child(args_in[1:])
    parser = argparse.ArgumentParser(prog="python -m bench.command_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=500, help="commands per measurement (each twice)")
    parser.add_argument("--only", default=",".join(COMMANDS), help=f"comma-separated, of {', '.join(COMMANDS)}")
    parser.add_argument("--keep-profiles", type=pathlib.Path, help="copy each command's pstats file here")
    args = parser.parse_args(args_in)
    only = tuple(name.strip().upper() for name in args.only.split(",") if name.strip())
    unknown = [name for name in only if name not in COMMANDS]
    if unknown or args.commands < 1:
        parser.error(f"unknown command {unknown[0]}" if unknown else "--commands must be at least 1")
    if args.keep_profiles is not None:
        args.keep_profiles.mkdir(parents=True, exist_ok=True)
    results = measure(args.commands, only, args.keep_profiles)
    print(json.dumps({"commands": args.commands, "per_command": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
