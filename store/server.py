"""`mailha store serve`: the store process (gRPC server over MailStore)."""

from __future__ import annotations

import gc
import logging
import os
import pathlib
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mailha_api import mailbox_index_pb2_grpc, settings_pb2, settings_pb2_grpc, store_pb2, store_pb2_grpc
from nodeconf.service_process import make_private_dirs, make_private_files, release_free_memory
from store.channel import CHANNEL_OPTIONS
from store.committer import REOPEN_AFTER_PAGES
from store.delivery_dedupe import DEFAULT_WINDOW
from store.engine import MailStore, StoreOptions
from store.index_servicer import MailboxIndexServicer
from store.layout import data_file, lmdb_dir, lock_file
from store.listen import parse_listen
from store.local_writes import LocalWritesServer
from store.passwords import hashes_done
from store.servicer import MailStoreServicer
from store.settings_servicer import SettingsServicer

log = logging.getLogger("mailha.store.server")
SERVICE_NAME = store_pb2.DESCRIPTOR.services_by_name["MailStore"].full_name
SETTINGS_SERVICE_NAME = settings_pb2.DESCRIPTOR.services_by_name["Settings"].full_name


@dataclass(frozen=True)
class ServeOptions:
    data_dir: pathlib.Path
    listen: str
    max_message_size: int
    default_quota: int = 0
    fence: int | None = None
    fence_next: bool = False
    read_only_start: bool = False
    # Each Watch stream holds a worker thread for its lifetime (imapd opens one per selected
    # mailbox and process, shared by its sessions). Threads are created on demand but never
    # retired, so the ceiling is what a flood leaves behind. RPCs beyond it are refused at once
    # (RESOURCE_EXHAUSTED) rather than queued without bound.
    workers: int = 1024
    reflection: bool = False
    heartbeat_seconds: float = 5.0
    delivery_dedupe_window: float = DEFAULT_WINDOW
    fulltext: bool = True  # index bodies for SEARCH TEXT/BODY in the background (off: those scan)
    reopen_after_pages: int = REOPEN_AFTER_PAGES  # store/committer.py, "Reopening"


def _trim_when_quiet(store: MailStore, stop: threading.Event, interval: float = 1.0) -> None:
    """Hand freed heap back to the system once the store has gone quiet after work.

    glibc keeps what a burst freed: password hashes of a login flood, or the
    replies and transactions of a large STORE, SEARCH or FETCH (issue 17: RssAnon
    30 -> 40 MB after a 50,000-message session, none of it live Python objects).
    LMDB's own leftovers (the dirty pages of its largest write transaction, kept until the
    environment closes) go when the committer reopens the environment (store/committer.py,
    "Reopening"); a reopen counts as work, so the pages it freed are trimmed after it.
    Work is counted by hashes, read transactions, committed writes and reopens (the
    full-text indexer is a process of its own); one interval without any after some is quiet."""

    def work() -> int:
        return hashes_done() + store.gate.entered + store.committer.ops + store.committer.reopens

    trimmed = last = work()
    while not stop.wait(interval):
        now = work()
        if now == last and now != trimmed:
            gc.collect()
            release_free_memory()
            trimmed = now
        last = now


def _start_local_writes(store: MailStore, data_dir: pathlib.Path) -> LocalWritesServer | None:
    local_writes = LocalWritesServer(store, data_dir)
    try:
        local_writes.start()
    except OSError as exc:
        # Front ends beside the store then write over gRPC, as one on another host does.
        log.error("no local write socket in %s: %s", data_dir, exc)
        return None
    return local_writes


def serve(options: ServeOptions) -> int:
    address = parse_listen(options.listen)
    make_private_dirs(options.data_dir, lmdb_dir(options.data_dir))
    make_private_files(data_file(options.data_dir), lock_file(options.data_dir))
    store = MailStore(
        StoreOptions(
            data_dir=options.data_dir,
            max_message_size=options.max_message_size,
            default_quota=options.default_quota,
            delivery_dedupe_window=options.delivery_dedupe_window,
            fulltext=options.fulltext,
            reopen_after_pages=options.reopen_after_pages,
        )
    )
    try:
        if options.fence is not None:
            store.fence(options.fence)
        elif options.fence_next:
            store.fence_next()
        if options.read_only_start:
            store.committer.writable = False
        epoch = store.epoch()

        server = grpc.server(
            ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="grpc"),
            maximum_concurrent_rpcs=options.workers,
            options=[
                *CHANNEL_OPTIONS,
                ("grpc.so_reuseport", 0),
            ],
        )
        servicer = MailStoreServicer(store, options.heartbeat_seconds)
        store_pb2_grpc.add_MailStoreServicer_to_server(servicer, server)
        settings_pb2_grpc.add_SettingsServicer_to_server(SettingsServicer(store), server)
        mailbox_index_pb2_grpc.add_MailboxIndexServicer_to_server(MailboxIndexServicer(store), server)
        health_servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        if options.reflection:  # a debugging aid (grpcurl): it lists every RPC to anyone on the socket
            reflection.enable_server_reflection(
                (
                    SERVICE_NAME,
                    SETTINGS_SERVICE_NAME,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    reflection.SERVICE_NAME,
                ),
                server,
            )
        if address.unix_path is not None:
            address.unix_path.parent.mkdir(parents=True, exist_ok=True)
            if address.unix_path.exists():
                address.unix_path.unlink()  # a stale socket of a dead process
            old_umask = os.umask(0o177)  # the socket is born 0600
            try:
                server.add_insecure_port(address.grpc_target)
            finally:
                os.umask(old_umask)
            os.chmod(address.unix_path, 0o600)
        else:
            port = server.add_insecure_port(address.grpc_target)
            log.info("bound TCP port %d", port)
        server.start()
        local_writes = _start_local_writes(store, options.data_dir)
        servicer.local_writes = local_writes
        for name in ("", SERVICE_NAME):
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "store serving on %s (data %s, epoch %d, %s)",
            options.listen,
            options.data_dir,
            epoch.epoch,
            "writable" if epoch.writable else "writes suspended",
        )

        stop = threading.Event()
        threading.Thread(target=_trim_when_quiet, args=(store, stop), name="malloc-trim", daemon=True).start()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        stop.wait()
        log.info("stopping: draining requests")
        health_servicer.enter_graceful_shutdown()
        store.feed.close_all()
        servicer.end_write_streams()  # long-lived calls too: else they hold the whole grace period
        if local_writes is not None:
            local_writes.close()  # likewise: writes in flight are answered, then each connection ends
        server.stop(grace=5).wait()
    finally:
        store.close()
    c = store.committer
    log.info(
        "stopped; group commit: %d operations in %d batches, %.2f ms applying and %.2f ms committing per batch",
        c.ops,
        c.batches,
        1000 * c.apply_seconds / max(1, c.batches),
        1000 * c.commit_seconds / max(1, c.batches),
    )
    return 0
