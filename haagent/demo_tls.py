"""TLS files for the cluster's IMAP service: configured ones, or a demo pair.

When cluster.yaml configures no certificate, every node presents the same
self-signed one from runtime_dir/tls/ (it names the floating IP), so a
client that trusted it keeps working after a failover. `mailha cluster up`
makes it; an agent started some other way can call ensure_tls_files() too:
the pair is made in a scratch directory and renamed into place, so two
agents racing never leave a key that does not match its certificate.
"""

from __future__ import annotations

import ipaddress
import os
import pathlib
import secrets
import shutil

from nodeconf.config import ClusterConfig
from nodeconf.selfsigned import write_self_signed

CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"


def demo_tls_dir(cfg: ClusterConfig) -> pathlib.Path:
    return cfg.runtime_dir / "tls"


def tls_files(cfg: ClusterConfig) -> tuple[pathlib.Path, pathlib.Path]:
    """(cert, key): the configured files, or where the demo pair lives."""
    if cfg.tls.cert is not None and cfg.tls.key is not None:
        return cfg.tls.cert, cfg.tls.key
    return demo_tls_dir(cfg) / CERT_NAME, demo_tls_dir(cfg) / KEY_NAME


def ensure_tls_files(cfg: ClusterConfig) -> tuple[pathlib.Path, pathlib.Path, bool]:
    """(cert, key, made_now): the configured pair, or the demo pair (made if missing)."""
    cert, key = tls_files(cfg)
    if cfg.tls.cert is not None:
        return cert, key, False
    made = write_self_signed_dir(
        demo_tls_dir(cfg),
        dns_names=("mailha.test", "localhost"),
        ip_addresses=(cfg.floating_ip.address.ip, ipaddress.IPv4Address("127.0.0.1")),
    )
    return cert, key, made


def write_self_signed_dir(
    directory: pathlib.Path,
    *,
    dns_names: tuple[str, ...],
    ip_addresses: tuple[ipaddress.IPv4Address, ...] = (),
    days: int = 365,
) -> bool:
    """Create `directory` holding cert.pem and key.pem (0600) unless it exists.

    Returns whether this call made it.
    """
    if (directory / CERT_NAME).exists() and (directory / KEY_NAME).exists():
        return False
    directory.parent.mkdir(parents=True, exist_ok=True)
    scratch = directory.parent / f".{directory.name}.{secrets.token_hex(4)}"
    scratch.mkdir(mode=0o755)
    try:
        write_self_signed(
            scratch / CERT_NAME, scratch / KEY_NAME, dns_names=dns_names, ip_addresses=ip_addresses, days=days
        )
        try:
            os.rename(scratch, directory)  # atomic; fails if another writer won
        except OSError:
            if (directory / CERT_NAME).exists() and (directory / KEY_NAME).exists():
                return False
            raise
        return True
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
