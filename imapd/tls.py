"""TLS for IMAP: server and client contexts.

The self-signed development certificate is nodeconf.selfsigned.ensure_dev_certificate.
"""

from __future__ import annotations

import pathlib
import ssl

from imapd.errors import TlsSetupError


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
