"""TLS for IMAP: server contexts and a self-signed development certificate.

`mailha standalone` calls `ensure_dev_certificate(DATA/tls)` when no
certificate is configured; the certificate names localhost and 127.0.0.1 so
a client can verify it by trusting that one file.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pathlib
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from imapd.errors import TlsSetupError

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
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Write the key with owner-only permissions from the start.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
