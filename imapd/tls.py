"""TLS for IMAP: server contexts and a self-signed development certificate.

`mailha standalone` calls `ensure_dev_certificate(DATA/tls)` when no
certificate is configured; the certificate names localhost and 127.0.0.1 so
a client can verify it by trusting that one file.
"""

from __future__ import annotations

import ipaddress
import pathlib
import ssl

from imapd.errors import TlsSetupError
from nodeconf.selfsigned import write_self_signed

DEV_CERT_NAME = "imapd-dev.crt"
DEV_KEY_NAME = "imapd-dev.key"


def server_context(cert: pathlib.Path, key: pathlib.Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise TlsSetupError(f"cannot load certificate {cert} / key {key}: {exc}") from exc
    return ctx


def client_context(cafile: pathlib.Path) -> ssl.SSLContext:
    """A verifying client context trusting `cafile` (tests, the benchmark)."""
    return ssl.create_default_context(cafile=str(cafile))


def ensure_dev_certificate(directory: pathlib.Path, days: int = 365) -> tuple[pathlib.Path, pathlib.Path]:
    """Return (cert, key) in `directory`, generating a self-signed pair if missing."""
    cert_path, key_path = directory / DEV_CERT_NAME, directory / DEV_KEY_NAME
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    write_self_signed(
        cert_path, key_path, dns_names=("localhost",), ip_addresses=(ipaddress.IPv4Address("127.0.0.1"),), days=days
    )
    return cert_path, key_path
