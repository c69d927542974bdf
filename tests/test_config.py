"""cluster.yaml loading: the shipped file loads; bad keys are named."""

from __future__ import annotations

import pathlib

import pytest

from nodeconf import config, services

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_shipped_cluster_yaml_loads() -> None:
    cfg = config.load(ROOT / "cluster.yaml")
    assert [n.name for n in cfg.nodes] == ["node1", "node2"]
    assert str(cfg.floating_ip.address) == "192.0.2.10/29"
    assert cfg.zookeeper.session_timeout == 2.0
    assert cfg.zookeeper.hosts.count(",") == 2
    assert cfg.store.max_message_size == 20 * 1024 * 1024
    assert cfg.node("node2").namespace == "mailha-node2"
    assert cfg.ports.web == 8443 and cfg.web.backup_repo is None


def test_web_port_and_backup_repository() -> None:
    cfg = config.parse({**BASE, "ports": {"web": 0}, "web": {"backup_repo": "/var/backups/mailha"}})
    assert cfg.ports.web == 0  # no web app on the nodes
    assert cfg.web.backup_repo == pathlib.Path("/var/backups/mailha") and cfg.web.backup_metrics_file is None


BASE = {"nodes": [{"name": "a", "address": "192.0.2.11/24"}], "zookeeper": {"members": [{"client_port": 2181}]}}


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"zookeeper": {"members": [{"client_port": 2181}], "session_timeout": -1}}, "zookeeper.session_timeout"),
        ({"nodes": [{"name": "a", "address": "not-an-ip/24"}]}, "nodes[0].address"),
        ({"nodes": [{"name": "a", "address": "192.0.2.11"}]}, "nodes[0].address"),
        ({"ports": {"imap": 70000}}, "ports.imap"),
        ({"ports": {"web": -1}}, "ports.web"),
        ({"web": {"backup_repo": ""}}, "web.backup_repo"),
        ({"web": {"repo": "/x"}}, "web.repo: unknown key"),
        ({"store": {"max_message_size": "lots"}}, "store.max_message_size"),
        ({"colour": "blue"}, "colour: unknown key"),
        ({"fencing": ["reboot-everything"]}, "fencing[0]"),
        ({"tls": {"cert": "/x.pem"}}, "tls: give both"),
        ({"nodes": []}, "nodes: at least one"),
    ],
)
def test_bad_config_names_the_key(patch: dict[str, object], message: str) -> None:
    data = {**BASE, **patch}
    with pytest.raises(config.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config.parse(data)


def test_missing_file_is_a_config_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(config.ConfigError, match="No such file"):
        config.load(tmp_path / "nope.yaml")


def test_imapd_cache_bounds_reach_its_command_line() -> None:
    cfg = config.parse({**BASE, "imap": {"envelope_cache": "2MiB", "sort_cache": 0, "mailbox_linger_seconds": 2.5}})
    assert (cfg.imap.envelope_cache, cfg.imap.sort_cache, cfg.imap.mailbox_linger_seconds) == (2 * 1024 * 1024, 0, 2.5)
    default = config.parse(BASE).imap
    assert (default.envelope_cache, default.sort_cache, default.mailbox_linger_seconds) == (8 << 20, 128 << 20, 15.0)
    caches = services.ImapCaches(cfg.imap.envelope_cache, cfg.imap.sort_cache, cfg.imap.mailbox_linger_seconds)
    spec = services.imapd_service(
        "unix:/s", 3, listen="", tls_listen="", cert=pathlib.Path("c"), key=pathlib.Path("k"), caches=caches
    )
    tail = spec.argv[spec.argv.index("--envelope-cache-mb") :]
    assert tail == ("--envelope-cache-mb", "2", "--sort-cache-mb", "0", "--mailbox-linger", "2.5")
    for bad in ({"mailbox_linger_seconds": -1}, {"mailbox_linger_seconds": "soon"}, {"sort_cache": "lots"}):
        with pytest.raises(config.ConfigError, match=f"imap.{next(iter(bad))}"):
            config.parse({**BASE, "imap": bad})
