"""TLS files for the cluster's IMAP service: configured ones, or a demo pair.

When cluster.yaml configures no certificate, every node presents the same
self-signed one from runtime_dir/tls/ (it names the floating IP), so a
client that trusted it keeps working after a failover. `mailha cluster up`
makes it; an agent started some other way can call ensure_tls_files() too:
the pair is made in a scratch directory and renamed into place, so two
agents racing never leave a key that does not match its certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pathlib
import secrets
import shutil

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailha.config import ClusterConfig

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
        _write_pair(scratch / CERT_NAME, scratch / KEY_NAME, dns_names, ip_addresses, days)
        try:
            os.rename(scratch, directory)  # atomic; fails if another writer won
        except OSError:
            if (directory / CERT_NAME).exists() and (directory / KEY_NAME).exists():
                return False
            raise
        return True
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _write_pair(
    cert_path: pathlib.Path,
    key_path: pathlib.Path,
    dns_names: tuple[str, ...],
    ip_addresses: tuple[ipaddress.IPv4Address, ...],
    days: int,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0] if dns_names else "mailha")])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    alt_names += [x509.IPAddress(ip) for ip in ip_addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        # CA:TRUE like imapd's dev certificate: clients trust this one file as their CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
