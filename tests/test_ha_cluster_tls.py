"""The cluster's demo TLS pair (haagent/demo_tls.py): names the floating IP,
owner-only key, one consistent pair even when agents race to make it."""

from __future__ import annotations

import dataclasses
import ipaddress
import pathlib
import ssl
from concurrent.futures import ThreadPoolExecutor

from cryptography import x509

from haagent import demo_tls
from nodeconf import config
from nodeconf.config import TlsConfig

BASE = {"nodes": [{"name": "a", "address": "192.0.2.11/29"}], "zookeeper": {"members": [{"client_port": 2181}]}}


def cfg_in(tmp_path: pathlib.Path) -> config.ClusterConfig:
    return config.parse({**BASE, "runtime_dir": str(tmp_path / "run"), "floating_ip": {"address": "192.0.2.10/29"}})


def test_demo_pair_names_the_floating_ip_and_loads(tmp_path: pathlib.Path) -> None:
    cfg = cfg_in(tmp_path)
    cert, key, made = demo_tls.ensure_tls_files(cfg)
    assert made is True
    assert (cert, key) == demo_tls.tls_files(cfg)
    assert key.stat().st_mode & 0o777 == 0o600
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.IPv4Address("192.0.2.10") in san.get_values_for_type(x509.IPAddress)
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert), str(key))  # key matches cert
    before = cert.read_bytes()
    assert demo_tls.ensure_tls_files(cfg) == (cert, key, False)
    assert cert.read_bytes() == before


def test_racing_writers_leave_one_consistent_pair(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "tls"

    def make(_: int) -> bool:
        return demo_tls.write_self_signed_dir(target, dns_names=("mailha.test",))

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(make, range(6)))
    assert results.count(True) == 1
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(target / "cert.pem"), str(target / "key.pem"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tls"]  # no scratch directories left


def test_configured_files_are_used_as_they_are(tmp_path: pathlib.Path) -> None:
    cfg = dataclasses.replace(cfg_in(tmp_path), tls=TlsConfig(cert=tmp_path / "c.pem", key=tmp_path / "k.pem"))
    assert demo_tls.ensure_tls_files(cfg) == (tmp_path / "c.pem", tmp_path / "k.pem", False)
    assert not (tmp_path / "run").exists()
