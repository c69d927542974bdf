"""Command lines of mailha's long-running services.

Standalone mode and the HA agent start the same processes; this module is the
one place that knows how. Each service is `python -m mailha.cli ...` so it
runs from the project's venv wherever it is started (also inside a netns).
"""

from __future__ import annotations

import os
import pathlib
import sys
from dataclasses import dataclass
from typing import Final

# Front-end metrics at the node's own address, next to the agent's (ports.metrics):
# the agent starts them there, the web console reads them there.
IMAPD_METRICS_OFFSET = 1
LMTPD_METRICS_OFFSET = 2


# Environment a service's interpreter starts with, on top of the launcher's (whose values win).
#
# Allocator (issue 17). pymalloc, Python's own, returns a 1 MiB arena only once every object
# in it is freed: after a FETCH/SORT/THREAD of 50,000 messages ~1,100 long-lived objects made
# meanwhile (trio's deadline-heap entries of closed connections, gRPC call and thread state,
# the command parser's cache) pinned ~30 arenas with 19.9 MB of blocks live (19.8 at idle),
# and imapd's RssAnon stayed 1.77-1.83x its idle size. glibc malloc gives memory back
# (malloc_trim) but cost imapd +80-90% CPU on the 50k command set. jemalloc (Debian's
# libjemalloc2, installed by scripts/bootstrap.sh) does both: imapd 1.12-1.13x idle, CPU on
# the 50k command set median 2.57 s against pymalloc's 2.43 (+6%; three runs each, A/B
# alternated, same hour); idle is 2.2 MB larger (35.0 MB against 32.8). The memory test,
# tests/test_imap_memory.py, checks the bound with this environment. jemalloc's dirty pages
# go back after a second (dirty_decay_ms), and at once when the process releases memory
# (nodeconf.service_process.release_free_memory); two arenas as for glibc (a thread of the
# gRPC pool does not get a heap of its own). Where the library is missing imapd runs on
# pymalloc, as before; an operator who wants pymalloc anyway starts the agent or standalone
# with `LD_PRELOAD= PYTHONMALLOC=pymalloc`. The store runs on it too (storemem17): after
# a STORE, COPY and EXPUNGE of 6,000 messages (tests/test_store_memory.py's writes, in one
# process without gRPC) pymalloc and glibc kept +6.5 MB RssAnon beyond LMDB's own pages
# (pymalloc arenas 12 -> 15 with ~11 KB of Python objects alive, and glibc arena pages),
# glibc malloc without pymalloc +1.8 MB, jemalloc nothing (21,816 KiB idle and after); what
# LMDB itself keeps goes when the store reopens it (store/committer.py, "Reopening").
#
# Slabs of 16 pages for the small size classes (mem16). jemalloc never gives back its own
# metadata, and most of it is one extent record per slab: with its default slabs (one page
# for the 16-128 byte classes Python's objects fall in) a peak of ~500 MB of small objects
# (a THREAD REFERENCES of a million messages) left ~11 MB of metadata resident for good,
# which was most of imapd's 35 -> 53 MB RssAnon after every session of the million-message
# bench closed. With 64 KiB slabs the same peak leaves ~3.7 MB (64-page slabs: no better).
JEMALLOC_PATHS: Final = tuple(
    pathlib.Path(d) / "libjemalloc.so.2"
    for d in (f"/usr/lib/{getattr(sys.implementation, '_multiarch', '')}", "/usr/lib64", "/usr/lib")
)
JEMALLOC_CONF: Final = "narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0,slab_sizes:1-4096:16"


def allocator_env(paths: tuple[pathlib.Path, ...] = JEMALLOC_PATHS) -> dict[str, str]:
    """jemalloc for every allocation of the interpreter, when the library is there."""
    for path in paths:
        if path.is_file():
            return {"LD_PRELOAD": str(path), "PYTHONMALLOC": "malloc", "MALLOC_CONF": JEMALLOC_CONF}
    return {}


ALLOCATOR_ENV: Final[dict[str, str]] = allocator_env()
SERVICE_ENV: Final[dict[str, dict[str, str]]] = {"imapd": ALLOCATOR_ENV, "store": ALLOCATOR_ENV}


def service_env(name: str) -> dict[str, str]:
    """The environment to start service `name` with (also its warm pre-started process)."""
    return {**SERVICE_ENV.get(name, {}), **os.environ}


@dataclass(frozen=True)
class ImapCaches:
    """imapd's per-process cache bounds (cluster.yaml `imap:`; see nodeconf.config.ImapConfig)."""

    envelope_bytes: int
    sort_bytes: int
    mailbox_linger: float


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    argv: tuple[str, ...]


def _mailha(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "mailha.cli", *args)


def store_service(
    data_dir: pathlib.Path,
    listen: str,
    *,
    max_message_size: int,
    default_quota: int = 0,
    fence: int | None = None,
    fence_next: bool = False,
    writable: bool = True,
    fulltext: bool = True,
) -> ServiceSpec:
    """The store process on `data_dir` (an LMDB environment directory).

    fence: raise the stored epoch to this value before serving (HA agent).
    fence_next: raise it to stored+1 (standalone: depose any earlier writer).
    """
    args = [
        "store",
        "serve",
        "--data",
        str(data_dir),
        "--listen",
        listen,
        "--max-message-size",
        str(max_message_size),
        "--default-quota",
        str(default_quota),
    ]
    if fence is not None:
        args += ["--fence", str(fence)]
    if fence_next:
        args.append("--fence-next")
    if not fulltext:
        args.append("--no-fulltext")
    if not writable:
        args.append("--read-only-start")
    return ServiceSpec("store", _mailha(*args))


def lmtpd_service(
    store: str,
    epoch: int,
    listen: str,
    *,
    max_message_size: int,
    hostname: str | None = None,
    quota_tempfail: bool = False,
    forward_relay: str | None = None,
    metrics_listen: str | None = None,
    store_data: pathlib.Path | None = None,
) -> ServiceSpec:
    """The LMTP server, writing into `store` with writer epoch `epoch` (never refreshed);
    `store_data`: the store's data directory on this host (appends go over its local
    write socket)."""
    args = [
        "lmtpd",
        "serve",
        "--store",
        store,
        "--epoch",
        str(epoch),
        "--listen",
        listen,
        "--max-message-size",
        str(max_message_size),
    ]
    if hostname:
        args += ["--hostname", hostname]
    if quota_tempfail:
        args.append("--quota-tempfail")
    if forward_relay:
        args += ["--forward-relay", forward_relay]
    if metrics_listen:
        args += ["--metrics-listen", metrics_listen]
    if store_data is not None:
        args += ["--store-data", str(store_data)]
    return ServiceSpec("lmtpd", _mailha(*args))


def imapd_service(
    store: str,
    epoch: int,
    *,
    listen: str,
    tls_listen: str,
    cert: pathlib.Path,
    key: pathlib.Path,
    allow_plaintext_login: bool = False,
    append_limit: int | None = None,
    store_data: pathlib.Path | None = None,
    metrics_listen: str | None = None,
    caches: ImapCaches | None = None,
) -> ServiceSpec:
    """The IMAP server on `store` with writer epoch `epoch` (never refreshed):
    plain + STARTTLS on `listen`, implicit TLS on `tls_listen`; `store_data`: the
    store's data directory on this host (reads go to its LMDB directly)."""
    args = ["imapd", "serve", "--store", store, "--epoch", str(epoch), "--cert", str(cert), "--key", str(key)]
    if listen:
        args += ["--listen", listen]
    if tls_listen:
        args += ["--tls-listen", tls_listen]
    if allow_plaintext_login:
        args.append("--allow-plaintext-login")
    if append_limit is not None:
        args += ["--append-limit", str(append_limit)]
    if store_data is not None:
        args += ["--store-data", str(store_data)]
    if metrics_listen:
        args += ["--metrics-listen", metrics_listen]
    if caches is not None:
        args += ["--envelope-cache-mb", f"{caches.envelope_bytes / 2**20:g}"]
        args += ["--sort-cache-mb", f"{caches.sort_bytes / 2**20:g}"]
        args += ["--mailbox-linger", f"{caches.mailbox_linger:g}"]
    return ServiceSpec("imapd", _mailha(*args))


def web_service(
    store: str,
    listen: str,
    *,
    cert: pathlib.Path,
    key: pathlib.Path,
    sample_interval: float = 5.0,
    backup_repo: pathlib.Path | None = None,
    scrape: tuple[tuple[str, str], ...] = (),
) -> ServiceSpec:
    """The HTTPS web app (users' page, operators' console) on `store`."""
    args = ["web", "serve", "--store", store, "--listen", listen, "--cert", str(cert), "--key", str(key)]
    args += ["--sample-interval", str(sample_interval)]
    if backup_repo is not None:
        args += ["--backup-repo", str(backup_repo.resolve())]
    for service, address in scrape:
        args += ["--scrape", f"{service}={address}"]
    return ServiceSpec("web", _mailha(*args))
