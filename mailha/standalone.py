"""Standalone mode: one node runs the store and its front ends, no ZooKeeper.

The store process raises the writer epoch by one when it starts, so an
earlier standalone instance on the same data directory is fenced; the front
ends are started with that epoch. When a child dies it is restarted; when the
store dies everything is restarted (the new store raises the epoch again).
"""

from __future__ import annotations

import logging
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

import grpc

from mailha_api import settings_pb2, settings_pb2_grpc, store_pb2, store_pb2_grpc
from nodeconf import service_user, services
from nodeconf.paths import StandalonePaths
from nodeconf.selfsigned import ensure_dev_certificate
from nodeconf.service_process import make_private_dirs, open_log
from nodeconf.service_user import DEFAULT_SERVICE_USER, ServiceUser
from store.channel import open_channel
from store.client import wait_for_store

log = logging.getLogger("mailha.standalone")


@dataclass(frozen=True)
class StandaloneOptions:
    data_dir: pathlib.Path
    max_message_size: int
    default_quota: int = 0
    demo_user: bool = False
    lmtp_listen: str = "127.0.0.1:2424"
    imap_listen: str = "127.0.0.1:1143"
    imaps_listen: str = "127.0.0.1:1993"
    allow_plaintext_login: bool = False
    web_listen: str = "127.0.0.1:8443"  # empty: no web app
    web_sample_interval: float = 5.0
    backup_repo: pathlib.Path | None = None  # shown in the web console (readable by the service user)
    imapd_metrics_listen: str = ""  # Prometheus HOST:PORT of imapd ("": none); the web graphs it
    lmtpd_metrics_listen: str = ""
    forward_relay: str = ""  # SMTP HOST:PORT for users' forwarding; empty: forwarding off
    service_user: str = DEFAULT_SERVICE_USER


# Hooks for the front ends: each returns the specs to start once the store is
# up, given the paths, the options and the epoch.
FrontEndFactory = Callable[[StandalonePaths, StandaloneOptions, int], list[services.ServiceSpec]]


def _lmtpd_front_end(paths: StandalonePaths, options: StandaloneOptions, epoch: int) -> list[services.ServiceSpec]:
    return [
        services.lmtpd_service(
            paths.store_socket,
            epoch,
            options.lmtp_listen,
            max_message_size=options.max_message_size,
            forward_relay=options.forward_relay or None,
            metrics_listen=options.lmtpd_metrics_listen or None,
            store_data=paths.store_dir,  # the store runs beside it: appends over its local write socket
        )
    ]


def _lmtpd_how_to(paths: StandalonePaths, options: StandaloneOptions) -> str:
    return f"LMTP on {options.lmtp_listen} (e.g. Postfix: lmtp:inet:{options.lmtp_listen})"


def _imapd_front_end(paths: StandalonePaths, options: StandaloneOptions, epoch: int) -> list[services.ServiceSpec]:
    cert, key = ensure_dev_certificate(paths.tls_dir)
    return [
        services.imapd_service(
            paths.store_socket,
            epoch,
            listen=options.imap_listen,
            tls_listen=options.imaps_listen,
            cert=cert,
            key=key,
            allow_plaintext_login=options.allow_plaintext_login,
            append_limit=options.max_message_size,
            store_data=paths.store_dir,  # the store runs beside it: read its LMDB directly
            metrics_listen=options.imapd_metrics_listen or None,
        )
    ]


def _imapd_how_to(paths: StandalonePaths, options: StandaloneOptions) -> str:
    plain = " (plaintext login allowed)" if options.allow_plaintext_login else ""
    return (
        f"IMAP on {options.imap_listen} (STARTTLS{plain}) and {options.imaps_listen} (TLS); "
        f"development certificate {paths.tls_dir}/imapd-dev.crt"
    )


def _web_front_end(paths: StandalonePaths, options: StandaloneOptions, epoch: int) -> list[services.ServiceSpec]:
    if not options.web_listen:
        return []

    cert, key = ensure_dev_certificate(paths.tls_dir)
    return [
        services.web_service(
            paths.store_socket,
            options.web_listen,
            cert=cert,
            key=key,
            sample_interval=options.web_sample_interval,
            backup_repo=options.backup_repo,
            scrape=tuple(
                (name, listen)
                for name, listen in (("imapd", options.imapd_metrics_listen), ("lmtpd", options.lmtpd_metrics_listen))
                if listen
            ),
        )
    ]


def _web_how_to(paths: StandalonePaths, options: StandaloneOptions) -> str:
    if not options.web_listen:
        return "web app off"
    return f"web: https://{options.web_listen}/ (users' page; operators' console for users with the admin role)"


FRONT_ENDS: list[FrontEndFactory] = [_lmtpd_front_end, _imapd_front_end, _web_front_end]
# Lines printed after start-up ("IMAP on ...").
HOW_TO_CONNECT: list[Callable[[StandalonePaths, StandaloneOptions], str]] = [
    _lmtpd_how_to,
    _imapd_how_to,
    _web_how_to,
]


class _Stop(Exception):
    pass


# The kernel SIGKILLs a child when this process dies, however it dies (even a
# service spinning in a CPU loop, deaf to SIGTERM, frees its port at once).
# This process is single-threaded, so the death signal follows its lifetime.
# One setpriv sets it after the switch to the service user (a uid change clears it).
PDEATHSIG = ("--pdeathsig", "KILL")


def _start(spec: services.ServiceSpec, log_dir: pathlib.Path, user: ServiceUser | None) -> subprocess.Popen[bytes]:
    out = open_log(log_dir / f"{spec.name}.log")  # opened here: the log stays the launcher's
    options: tuple[str, ...] = PDEATHSIG
    if user is not None:
        options += user.setpriv_options(bind_low_ports=spec.name in ("imapd", "lmtpd"))
    argv = ("setpriv", *options, "--", *spec.argv)
    try:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=services.service_env(spec.name)
        )
    finally:
        os.close(out)


def _stop_all(children: dict[str, subprocess.Popen[bytes]]) -> None:
    for child in reversed(list(children.values())):
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + 10
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _create_demo_user(address: str, epoch: int) -> None:
    with open_channel(address) as channel:
        stub = store_pb2_grpc.MailStoreStub(channel)
        try:
            stub.CreateUser(store_pb2.CreateUserRequest(epoch=epoch, name="demo", password="demo"), timeout=10)
            stub.AddAddress(store_pb2.AddAddressRequest(epoch=epoch, address="demo@mailha.test", user="demo"))
            settings_pb2_grpc.SettingsStub(channel).PutSettings(
                settings_pb2.PutSettingsRequest(
                    epoch=epoch, settings=settings_pb2.UserSettings(user="demo", admin=True)
                )
            )
            print("created user 'demo' (password 'demo', address demo@mailha.test, admin role)")
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise


def run_standalone(options: StandaloneOptions) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    paths = StandalonePaths(options.data_dir)
    log_dir = paths.data_dir / "log"
    try:
        user = service_user.resolve(options.service_user)
        make_private_dirs(paths.data_dir, paths.store_dir, paths.run_dir, log_dir)
        if user is not None:
            user.check_reachable(paths.data_dir)
    except service_user.ServiceUserError as exc:
        print(f"mailha standalone: {exc}", file=sys.stderr)
        return 2

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    children: dict[str, subprocess.Popen[bytes]] = {}
    first = True
    try:
        while True:
            store = services.store_service(
                paths.store_dir,
                paths.store_socket,
                max_message_size=options.max_message_size,
                default_quota=options.default_quota,
                fence_next=True,
            )
            if user is not None:  # LMDB, socket, spool; the logs stay the launcher's
                user.let_through(paths.data_dir)
                user.own(paths.store_dir, paths.run_dir)
            children = {"store": _start(store, log_dir, user)}
            epoch = wait_for_store(paths.store_socket)
            specs: list[services.ServiceSpec] = []
            for factory in FRONT_ENDS:
                specs += factory(paths, options, epoch)
            if user is not None:
                user.own(paths.tls_dir)  # made by the imapd factory just now
            for spec in specs:
                children[spec.name] = _start(spec, log_dir, user)
            if first:
                if options.demo_user:
                    _create_demo_user(paths.store_socket, epoch)
                print(f"mailha standalone: store on {paths.store_socket} (writer epoch {epoch})")
                for line in HOW_TO_CONNECT:
                    print(line(paths, options))
                print(f"logs in {log_dir}; stop with Ctrl-C")
                sys.stdout.flush()
                first = False
            while True:
                time.sleep(0.5)
                dead = [name for name, child in children.items() if child.poll() is not None]
                if "store" in dead:
                    log.warning("store exited with %s; restarting every service", children["store"].returncode)
                    _stop_all(children)
                    break
                for name in dead:
                    spec = next(s for s in specs if s.name == name)
                    log.warning("%s exited with %s; restarting it", name, children[name].returncode)
                    time.sleep(0.5)
                    children[name] = _start(spec, log_dir, user)
    except _Stop:
        _stop_all(children)
        print("mailha standalone: stopped")
        return 0
