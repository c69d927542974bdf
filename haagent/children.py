"""Child processes of the agent: started under `setpriv --pdeathsig KILL`
(the kernel kills them when the agent dies; called on the trio thread, as
the death signal follows the thread that forked), and the pool of warm
pre-started processes (mailha/prestart.py) a takeover hands its argv to.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from nodeconf.service_process import open_log
from nodeconf.service_user import ServiceUser
from nodeconf.services import service_env


def spawn(
    name: str,
    argv: tuple[str, ...],
    log_dir: pathlib.Path,
    *,
    stdin: int | None = None,
    pass_fds: tuple[int, ...] = (),
    user: ServiceUser | None = None,
) -> subprocess.Popen[bytes]:
    """`user`: run as that account (the store without, the front ends with CAP_NET_BIND_SERVICE)."""
    out = open_log(log_dir / f"{name}.log")
    drop = () if user is None else user.setpriv_options(bind_low_ports=name != "store")
    try:
        # Called on the trio thread on purpose: see the module docstring.
        return subprocess.Popen(
            ("setpriv", *drop, "--pdeathsig", "KILL", "--", *argv),
            stdin=stdin,
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=pass_fds,
            env=service_env(name),
        )
    finally:
        os.close(out)


MAILHA_PREFIX = (sys.executable, "-m", "mailha.cli")


class WarmPool:
    """One pre-started `mailha.prestart` process per service (see that
    module): a takeover hands it its argv instead of paying for interpreter
    start-up and imports."""

    def __init__(self, log_dir: pathlib.Path, user: ServiceUser | None = None) -> None:
        self.log_dir = log_dir
        self.user = user
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._ready_pipes: dict[str, int] = {}  # read ends; the child writes one byte when warm
        self._ready: set[str] = set()

    def fill(self, names: list[str]) -> None:
        for name in names:
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                self._forget(name)
                r, w = os.pipe()
                os.set_blocking(r, False)
                argv = (sys.executable, "-m", "mailha.prestart", name, str(w))
                try:
                    self.procs[name] = spawn(
                        name, argv, self.log_dir, stdin=subprocess.PIPE, pass_fds=(w,), user=self.user
                    )
                finally:
                    os.close(w)
                self._ready_pipes[name] = r

    def ready(self, names: list[str]) -> bool:
        """True when a warm process for every name has finished its imports."""
        for name in names:
            if name in self._ready:
                continue
            r = self._ready_pipes.get(name)
            if r is None:
                return False
            try:
                if os.read(r, 1) != b"r":
                    return False
            except BlockingIOError:
                return False
            self._ready.add(name)
        return True

    def _forget(self, name: str) -> None:
        self._ready.discard(name)
        r = self._ready_pipes.pop(name, None)
        if r is not None:
            os.close(r)

    def launch(self, name: str, argv: tuple[str, ...]) -> subprocess.Popen[bytes]:
        """Start `argv` in the warm process for `name` if there is one, else cold."""
        proc = self.procs.pop(name, None)
        self._forget(name)
        if proc is not None and proc.poll() is None and proc.stdin is not None and argv[:3] == MAILHA_PREFIX:
            try:
                proc.stdin.write(json.dumps(list(argv[3:])).encode() + b"\n")
                proc.stdin.close()
                return proc
            except OSError:
                proc.kill()
        return spawn(name, argv, self.log_dir, user=self.user)

    def clear(self) -> None:
        for name, proc in self.procs.items():
            proc.kill()
            proc.wait()
            self._forget(name)
        self.procs.clear()
