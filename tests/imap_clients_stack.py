"""A real store process plus a real `mailha imapd serve` process, for tests
with real IMAP clients (imaplib, imapclient, mbsync)."""

from __future__ import annotations

import pathlib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from mailha_api import store_pb2, store_pb2_grpc
from nodeconf.selfsigned import ensure_dev_certificate
from tests.store_fixtures import ROOT, StoreServer

USERS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ImapStack:
    store: StoreServer
    process: subprocess.Popen[bytes]
    port: int
    tls_port: int
    cert: pathlib.Path
    epoch: int

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def create_user(self, name: str, password: str) -> None:
        with grpc.insecure_channel(self.store.address) as channel:
            stub = store_pb2_grpc.MailStoreStub(channel)
            stub.CreateUser(store_pb2.CreateUserRequest(epoch=self.epoch, name=name, password=password))


def wait_port(port: int, process: subprocess.Popen[bytes], log: pathlib.Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"imapd exited: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"imapd did not listen on {port}: {log.read_text()}")


@pytest.fixture(scope="module")
def imap_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImapStack]:
    base = tmp_path_factory.mktemp("imapstack")
    store = StoreServer(base / "store", base / "store.sock").start()
    try:
        with grpc.insecure_channel(store.address) as channel:
            stub = store_pb2_grpc.MailStoreStub(channel)
            epoch = int(stub.GetEpoch(store_pb2.GetEpochRequest()).epoch)
            for name, password in USERS.items():
                stub.CreateUser(store_pb2.CreateUserRequest(epoch=epoch, name=name, password=password))
        cert, key = ensure_dev_certificate(base / "tls")
        port, tls_port = free_port(), free_port()
        argv = [sys.executable, "-m", "mailha.cli", "imapd", "serve", "--store", store.address]
        argv += ["--epoch", str(epoch), "--listen", f"127.0.0.1:{port}", "--tls-listen", f"127.0.0.1:{tls_port}"]
        argv += ["--cert", str(cert), "--key", str(key)]
        log = base / "imapd.log"
        with open(log, "ab") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            wait_port(port, process, log)
            wait_port(tls_port, process, log)
            yield ImapStack(store, process, port, tls_port, cert, epoch)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        store.stop()
