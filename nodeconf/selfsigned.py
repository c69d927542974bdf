"""Self-signed certificates for development and the demo cluster.

One generator for `mailha standalone` (ensure_dev_certificate below) and the
cluster's shared certificate (haagent/demo_tls.py). The certificate is its own CA (CA:TRUE), so a client
verifies the server by trusting that one file.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def write_self_signed(
    cert_path: pathlib.Path,
    key_path: pathlib.Path,
    *,
    dns_names: tuple[str, ...],
    ip_addresses: tuple[ipaddress.IPv4Address, ...] = (),
    days: int = 365,
) -> None:
    """Write a fresh EC P-256 key (mode 0600 from the start) and a certificate naming the given hosts."""
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
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


DEV_CERT_NAME = "imapd-dev.crt"
DEV_KEY_NAME = "imapd-dev.key"


def ensure_dev_certificate(directory: pathlib.Path, days: int = 365) -> tuple[pathlib.Path, pathlib.Path]:
    """Return (cert, key) in `directory`, generating a self-signed pair if missing.

    `mailha standalone` and `mailha web serve` use it when no certificate is
    configured; it names localhost and 127.0.0.1.
    """
    cert_path, key_path = directory / DEV_CERT_NAME, directory / DEV_KEY_NAME
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    write_self_signed(
        cert_path, key_path, dns_names=("localhost",), ip_addresses=(ipaddress.IPv4Address("127.0.0.1"),), days=days
    )
    return cert_path, key_path
