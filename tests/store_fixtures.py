"""Store test fixtures: a real `mailha store serve` process, and an in-process MailStore."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import cast

import grpc
import pytest

from store.client import StoreClient
from store.engine import MailStore, StoreOptions

ROOT = pathlib.Path(__file__).resolve().parent.parent


def rpc_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """(code, details) of a failed gRPC call."""
    call = cast("grpc.Call", exc)
    return call.code(), call.details() or ""


@dataclass
class StoreServer:
    """One store process on `data_dir`, listening on a unix socket."""

    data_dir: pathlib.Path
    socket_path: pathlib.Path
    extra_args: tuple[str, ...] = ("--fence-next",)
    env: dict[str, str] | None = None  # None: this process's; nodeconf.services.service_env("store"): production's
    process: subprocess.Popen[bytes] | None = None
    log_path: pathlib.Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir.parent / f"{self.socket_path.stem}.log"

    @property
    def address(self) -> str:
        return f"unix:{self.socket_path}"

    def start(self, timeout: float = 30.0) -> StoreServer:
        argv = [sys.executable, "-m", "mailha.cli", "store", "serve", "--data", str(self.data_dir)]
        argv += ["--listen", self.address, *self.extra_args]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=self.env)
        with StoreClient(self.address) as client:
            try:
                client.wait_ready(timeout)
                client.epoch()
            except Exception:
                self.stop()
                raise RuntimeError(f"store did not start; log:\n{self.log_path.read_text()}") from None
        return self

    def client(self) -> StoreClient:
        return StoreClient(self.address)

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def store_server(tmp_path: pathlib.Path) -> Iterator[StoreServer]:
    """A running store process (fenced to epoch 1) on a fresh data dir; stopped afterwards."""
    server = StoreServer(tmp_path / "store", tmp_path / "store.sock")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mail_store(tmp_path: pathlib.Path) -> Iterator[MailStore]:
    """An in-process MailStore (epoch 1) on a fresh data dir."""
    store = MailStore(StoreOptions(data_dir=tmp_path / "inproc", max_message_size=1024 * 1024))
    store.fence(1)
    try:
        yield store
    finally:
        store.close()
