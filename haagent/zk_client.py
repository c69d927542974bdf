"""The one way mailha builds a kazoo client for the cluster's ZooKeeper.

Every znode mailha creates is readable and writable only by the digest
identity of cluster.yaml (zookeeper.auth_user, auth_password_file): the client
authenticates with it and uses it as the default ACL. The chroot znode is
created (with that ACL) before the chrooted client is handed out, because a
chrooted kazoo client cannot create its own root.
"""

from __future__ import annotations

from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NodeExistsError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.security import ACL, make_digest_acl

from nodeconf.config import ZooKeeperConfig


class ZkClientError(Exception):
    """ZooKeeper could not be reached (or refused us) while preparing a client."""


def mailha_acl(cfg: ZooKeeperConfig) -> list[ACL]:
    """All permissions for the configured digest identity, nothing for anyone else."""
    return [make_digest_acl(cfg.auth_user, cfg.auth_password(), all=True)]


def auth_data(cfg: ZooKeeperConfig) -> list[tuple[str, str]]:
    return [("digest", f"{cfg.auth_user}:{cfg.auth_password()}")]


def ensure_chroot(cfg: ZooKeeperConfig, hosts_override: str | None = None, timeout: float = 10.0) -> None:
    """Create cfg.chroot (and its parents) with mailha's ACL if missing."""
    hosts = hosts_override or cfg.hosts
    client = KazooClient(hosts=hosts, timeout=timeout, auth_data=auth_data(cfg), default_acl=mailha_acl(cfg))
    try:
        client.start(timeout=timeout)
    except KazooTimeoutError as exc:
        client.close()
        raise ZkClientError(f"ZooKeeper at {hosts} not reachable within {timeout:.0f} s") from exc
    try:
        if client.exists(cfg.chroot) is None:
            try:
                client.ensure_path(cfg.chroot)
            except NodeExistsError:  # another node won the race
                pass
    except KazooException as exc:
        raise ZkClientError(f"cannot create ZooKeeper chroot {cfg.chroot}: {exc!r}") from exc
    finally:
        client.stop()
        client.close()


def make_client(
    cfg: ZooKeeperConfig,
    hosts_override: str | None = None,
    *,
    create_chroot: bool = True,
    timeout: float = 10.0,
    **kazoo_options: Any,
) -> KazooClient:
    """A kazoo client for the cluster: chrooted, authenticated, ACL'd; not started.

    hosts_override: "host:port,..." to use instead of the configured members
        (tests, or reaching the ensemble from somewhere else).
    create_chroot: connect once now to make sure the chroot exists (raises
        ZkClientError when ZooKeeper is unreachable within `timeout`).
    kazoo_options: passed through to KazooClient (e.g. connection_retry).
    The session timeout is cfg.session_timeout. The caller starts the
    client (after attaching its state listener) and stops/closes it.
    """
    hosts = hosts_override or cfg.hosts
    if create_chroot:
        ensure_chroot(cfg, hosts, timeout)
    chroot = "" if cfg.chroot == "/" else cfg.chroot
    return KazooClient(
        hosts=hosts + chroot,
        timeout=cfg.session_timeout,
        auth_data=auth_data(cfg),
        default_acl=mailha_acl(cfg),
        **kazoo_options,
    )
