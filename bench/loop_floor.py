"""The floor under imapd's per-command cost: a server loop that does nothing but wait, read and
write, answering imaplib's NOOPs (issue 13).

    python -m bench.loop_floor [--commands 10000]

Two loops, each in this process with one imaplib client in a child process, CPU per command of
this process (every thread, /proc schedstat) over the client's timed NOOPs:

- trio: `trio.lowlevel.wait_readable`, `os.read`, `os.writev` per command, the calls imapd's
  server loop makes (one run-loop pass per command, as in imapd);
- epoll: the same with a blocking `select.epoll` (no event loop at all).

Compare with `python -m bench.command_cost --only NOOP` run in the same minutes: the difference
between the trio floor and imapd's NOOP is what imapd's own code can still win; the trio floor
above the epoll one is the event loop's share, which it cannot.
"""

from __future__ import annotations

import argparse
import imaplib
import json
import os
import select
import socket
import subprocess
import sys
import time
from typing import Final

import trio

_WARMUP: Final = 200
LOOPS: Final = ("trio", "epoll")


def _cpu_seconds(pid: int) -> float:
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended meanwhile
    return total / 1e9


def _answer(fd: int, data: bytes) -> bool:
    """Reply to one imaplib command line; False after LOGOUT."""
    tag = data.split(b" ", 1)[0]
    if b"CAPABILITY" in data:
        os.writev(fd, [b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK CAPABILITY completed\r\n"])
        return True
    if b"LOGOUT" in data:
        os.writev(fd, [b"* BYE\r\n" + tag + b" OK LOGOUT completed\r\n"])
        return False
    os.writev(fd, [tag + b" OK NOOP completed\r\n"])
    return True


async def _serve_trio(listener: socket.socket) -> None:
    sock = trio.socket.from_stdlib_socket(listener)
    conn, _ = await sock.accept()
    with conn:
        fd = conn.fileno()
        os.write(fd, b"* OK ready\r\n")
        while True:
            await trio.lowlevel.wait_readable(fd)
            data = os.read(fd, 65536)
            if not data or not _answer(fd, data):
                return


def _serve_epoll(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    with conn:
        conn.setblocking(False)
        fd = conn.fileno()
        poller = select.epoll()
        try:
            poller.register(fd, select.EPOLLIN)
            os.write(fd, b"* OK ready\r\n")
            while True:
                poller.poll(10.0)
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not data or not _answer(fd, data):
                    return
        finally:
            poller.close()


def _client(port: int, server_pid: int, commands: int) -> None:
    client = imaplib.IMAP4("127.0.0.1", port)
    for _ in range(_WARMUP):
        client.noop()
    before = _cpu_seconds(server_pid)
    for _ in range(commands):
        client.noop()
    print(json.dumps({"cpu_us": round((_cpu_seconds(server_pid) - before) / commands * 1e6, 1)}))
    client.logout()


def measure(loop: str, commands: int) -> float:
    """This process's CPU per NOOP (µs) serving an imaplib client with `loop`."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.loop_floor", "--client", str(port), str(os.getpid()), str(commands)],
            stdout=subprocess.PIPE,
        )
        try:
            if loop == "trio":
                trio.run(_serve_trio, listener)
            else:
                _serve_epoll(listener)
            out, _ = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    if child.returncode != 0:
        raise RuntimeError(f"the imaplib client failed ({child.returncode})")
    return float(json.loads(out)["cpu_us"])


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--client"]:
        _client(int(args_in[1]), int(args_in[2]), int(args_in[3]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.loop_floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=10000, help="timed NOOPs per loop")
    args = parser.parse_args(args_in)
    if args.commands < 1:
        parser.error("--commands must be at least 1")
    started = time.time()
    result = {loop: measure(loop, args.commands) for loop in LOOPS}
    print(json.dumps({"commands": args.commands, "cpu_us": result, "seconds": round(time.time() - started, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
