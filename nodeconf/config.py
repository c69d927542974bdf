"""cluster.yaml, loaded once into frozen typed objects.

Every error names the key that is wrong ("zookeeper.session_timeout: must be
a positive number"). Nothing downstream sees a raw dict.
"""

from __future__ import annotations

import ipaddress
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml

from nodeconf.secret_file import SecretFileError, read_secret

MIB = 1024 * 1024


class ConfigError(ValueError):
    """A cluster.yaml problem; the message starts with the dotted key."""


@dataclass(frozen=True)
class TlsConfig:
    cert: pathlib.Path | None = None
    key: pathlib.Path | None = None


@dataclass(frozen=True)
class Ports:
    imap: int = 143
    imaps: int = 993
    lmtp: int = 24
    store: int = 7070
    metrics: int = 9110
    agent: int = 7080
    web: int = 8443  # every node's agent serves the web app here (its address and the floating IP); 0: off


@dataclass(frozen=True)
class NodeConfig:
    name: str
    address: ipaddress.IPv4Interface
    namespace: str


@dataclass(frozen=True)
class FloatingIpConfig:
    address: ipaddress.IPv4Interface = ipaddress.IPv4Interface("192.0.2.10/24")
    interface: str = "eth0"
    garp_count: int = 3
    garp_interval: float = 0.2


@dataclass(frozen=True)
class ZkMember:
    id: int
    host: str
    client_port: int
    peer_port: int
    election_port: int


@dataclass(frozen=True)
class ZooKeeperConfig:
    members: tuple[ZkMember, ...]
    chroot: str = "/mailha"
    session_timeout: float = 2.0
    auth_user: str = "mailha"
    data_dir: pathlib.Path = pathlib.Path("/var/lib/mailha/zk")
    tick_time_ms: int = 200
    # The digest password lives in this file (0600), never in cluster.yaml or the code;
    # `cluster up` generates it when missing. None: `<data_dir>/secret`.
    auth_password_file: pathlib.Path | None = None

    @property
    def hosts(self) -> str:
        return ",".join(f"{m.host}:{m.client_port}" for m in self.members)

    @property
    def secret_file(self) -> pathlib.Path:
        return self.auth_password_file or self.data_dir / "secret"

    def auth_password(self) -> str:
        """The digest password, read from `secret_file`; ConfigError if there is none."""
        try:
            return read_secret(self.secret_file, "zookeeper.auth_password_file")
        except SecretFileError as exc:
            raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class StorageConfig:
    path: pathlib.Path = pathlib.Path("/var/lib/mailha/shared")
    activate: str = "dir"  # "dir" or "shell:<command>"
    deactivate: str = "none"  # "none" or "shell:<command>"


@dataclass(frozen=True)
class StoreConfig:
    max_message_size: int = 20 * MIB
    default_quota: int = 0  # bytes; 0 = unlimited
    map_size: int = 256 * MIB  # initial LMDB map; grows by itself
    group_commit_max_batch: int = 256


@dataclass(frozen=True)
class WebConfig:
    backup_repo: pathlib.Path | None = None  # the backup repository the console reports on
    backup_metrics_file: pathlib.Path | None = None  # its runs' textfile when not in it (--metrics-file)


@dataclass(frozen=True)
class ImapConfig:
    allow_plaintext_login: bool = False
    max_connections_per_user: int = 20
    autologout_seconds: int = 1800
    idle_timeout_seconds: int = 1800
    # Per-process caches of imapd (issue 17): rendered ENVELOPEs and SORT/THREAD keys, each
    # bounded in bytes; a mailbox's entries go once no session has had it selected for
    # mailbox_linger_seconds (its change feed closes then too).
    envelope_cache: int = 8 * MIB
    sort_cache: int = 128 * MIB
    mailbox_linger_seconds: float = 15.0


@dataclass(frozen=True)
class ClusterConfig:
    name: str
    nodes: tuple[NodeConfig, ...]
    zookeeper: ZooKeeperConfig
    floating_ip: FloatingIpConfig = FloatingIpConfig()
    bridge: str = "mailha-br0"
    bridge_address: ipaddress.IPv4Interface = ipaddress.IPv4Interface("192.0.2.1/24")
    storage: StorageConfig = StorageConfig()
    ports: Ports = Ports()
    tls: TlsConfig = TlsConfig()
    fencing: tuple[str, ...] = ("netns-kill",)
    store: StoreConfig = StoreConfig()
    imap: ImapConfig = ImapConfig()
    web: WebConfig = WebConfig()
    runtime_dir: pathlib.Path = pathlib.Path("/run/mailha")
    health_interval: float = 0.5
    # The account store, imapd and lmtpd run as when the agent runs as root ("root": no drop).
    service_user: str = "mailha"
    source: pathlib.Path | None = field(default=None, compare=False)

    def node(self, name: str) -> NodeConfig:
        for node in self.nodes:
            if node.name == name:
                return node
        raise ConfigError(f"nodes: no node named {name!r} (have {', '.join(n.name for n in self.nodes)})")


# ---------------------------------------------------------------------------
# Loading

T = TypeVar("T")


class _Section:
    """A mapping being read; remembers its dotted path and which keys were used."""

    def __init__(self, path: str, data: object) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path or '<top>'}: must be a mapping")
        self.path = path
        self.data: Mapping[str, Any] = data
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def raw(self, name: str) -> object:
        self.used.add(name)
        return self.data.get(name)

    def has(self, name: str) -> bool:
        return name in self.data

    def section(self, name: str) -> _Section:
        return _Section(self.key(name), self.raw(name))

    def string(self, name: str, default: str | None = None) -> str:
        value = self.raw(name)
        if value is None:
            if default is None:
                raise ConfigError(f"{self.key(name)}: required")
            return default
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{self.key(name)}: must be a non-empty string")
        return value

    def integer(self, name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self.key(name)}: must be an integer")
        if value < minimum or (maximum is not None and value > maximum):
            raise ConfigError(
                f"{self.key(name)}: must be between {minimum} and {maximum if maximum is not None else 'any'}"
            )
        return value

    def number(self, name: str, default: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{self.key(name)}: must be a positive number")
        return float(value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigError(f"{self.key(name)}: must be true or false")
        return value

    def path_(self, name: str, default: pathlib.Path | None) -> pathlib.Path | None:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{self.key(name)}: must be a path")
        return pathlib.Path(value)

    def interface(self, name: str, default: ipaddress.IPv4Interface | None = None) -> ipaddress.IPv4Interface:
        value = self.raw(name)
        if value is None:
            if default is None:
                raise ConfigError(f"{self.key(name)}: required")
            return default
        try:
            iface = ipaddress.IPv4Interface(str(value))
        except ValueError as exc:
            raise ConfigError(f"{self.key(name)}: {exc}") from None
        if "/" not in str(value):
            raise ConfigError(f"{self.key(name)}: give a prefix length, e.g. {value}/24")
        return iface

    def items(self, name: str) -> list[object]:
        value = self.raw(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise ConfigError(f"{self.key(name)}: must be a list")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(f"{self.key(unknown[0])}: unknown key")


def _size(sec: _Section, name: str, default: int) -> int:
    """Sizes accept integers (bytes) or strings like '20MiB'."""
    value = sec.raw(name)
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        units = {"KiB": 1024, "MiB": MIB, "GiB": 1024 * MIB, "B": 1}
        for unit, factor in units.items():
            if value.endswith(unit) and value[: -len(unit)].strip().isdigit():
                return int(value[: -len(unit)]) * factor
    raise ConfigError(f"{sec.key(name)}: must be a byte count such as 20971520 or '20MiB'")


def _linger(sec: _Section) -> float:
    value = sec.raw("mailbox_linger_seconds")
    if value is None:
        return ImapConfig.mailbox_linger_seconds
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 3600:
        raise ConfigError(f"{sec.key('mailbox_linger_seconds')}: must be a number of seconds from 0 to 3600")
    return float(value)


def _port(sec: _Section, name: str, default: int) -> int:
    return sec.integer(name, default, minimum=1, maximum=65535)


def parse(data: object, source: pathlib.Path | None = None) -> ClusterConfig:
    top = _Section("", data)
    name = top.string("name", "mailha")

    nodes: list[NodeConfig] = []
    for i, raw in enumerate(top.items("nodes")):
        sec = _Section(f"nodes[{i}]", raw)
        node = NodeConfig(
            name=sec.string("name"),
            address=sec.interface("address"),
            namespace=sec.string("namespace", f"mailha-{sec.string('name')}"),
        )
        sec.finish()
        nodes.append(node)
    if not nodes:
        raise ConfigError("nodes: at least one node is required")
    if len({n.name for n in nodes}) != len(nodes):
        raise ConfigError("nodes: node names must be unique")

    fsec = top.section("floating_ip")
    floating = FloatingIpConfig(
        address=fsec.interface("address", FloatingIpConfig.address),
        interface=fsec.string("interface", "eth0"),
        garp_count=fsec.integer("garp_count", 3, minimum=1, maximum=20),
        garp_interval=fsec.number("garp_interval", 0.2),
    )
    fsec.finish()

    zsec = top.section("zookeeper")
    members: list[ZkMember] = []
    for i, raw in enumerate(zsec.items("members")):
        msec = _Section(f"zookeeper.members[{i}]", raw)
        members.append(
            ZkMember(
                id=msec.integer("id", i + 1, minimum=1, maximum=255),
                host=msec.string("host", "127.0.0.1"),
                client_port=_port(msec, "client_port", 2181 + i),
                peer_port=_port(msec, "peer_port", 2888 + i),
                election_port=_port(msec, "election_port", 3888 + i),
            )
        )
        msec.finish()
    if not members:
        raise ConfigError("zookeeper.members: at least one member is required")
    if zsec.has("auth_password"):
        raise ConfigError(
            "zookeeper.auth_password: a password in cluster.yaml is readable by every local user; "
            "put it in a file of its own (mode 0600) named by zookeeper.auth_password_file, "
            "or leave both out and let `mailha cluster up` generate one"
        )
    chroot = zsec.string("chroot", "/mailha")
    if not chroot.startswith("/"):
        raise ConfigError("zookeeper.chroot: must start with '/'")
    zk = ZooKeeperConfig(
        members=tuple(members),
        chroot=chroot,
        session_timeout=zsec.number("session_timeout", 2.0),
        auth_user=zsec.string("auth_user", "mailha"),
        auth_password_file=zsec.path_("auth_password_file", None),
        data_dir=zsec.path_("data_dir", ZooKeeperConfig.data_dir) or ZooKeeperConfig.data_dir,
        tick_time_ms=zsec.integer("tick_time_ms", 200, minimum=10, maximum=10000),
    )
    zsec.finish()

    ssec = top.section("storage")
    storage = StorageConfig(
        path=ssec.path_("path", StorageConfig.path) or StorageConfig.path,
        activate=ssec.string("activate", "dir"),
        deactivate=ssec.string("deactivate", "none"),
    )
    for key, value in (("activate", storage.activate), ("deactivate", storage.deactivate)):
        if value not in ("dir", "none") and not value.startswith("shell:"):
            raise ConfigError(f"storage.{key}: must be 'dir', 'none' or 'shell:<command>'")
    ssec.finish()

    psec = top.section("ports")
    ports = Ports(
        imap=_port(psec, "imap", 143),
        imaps=_port(psec, "imaps", 993),
        lmtp=_port(psec, "lmtp", 24),
        store=_port(psec, "store", 7070),
        metrics=_port(psec, "metrics", 9110),
        agent=_port(psec, "agent", 7080),
        web=psec.integer("web", 8443, minimum=0, maximum=65535),
    )
    psec.finish()

    tsec = top.section("tls")
    tls = TlsConfig(cert=tsec.path_("cert", None), key=tsec.path_("key", None))
    if (tls.cert is None) != (tls.key is None):
        raise ConfigError("tls: give both cert and key, or neither")
    tsec.finish()

    fencing: list[str] = []
    for i, raw in enumerate(top.items("fencing")):
        if not isinstance(raw, str) or not (raw == "netns-kill" or raw.startswith("shell:")):
            raise ConfigError(f"fencing[{i}]: must be 'netns-kill' or 'shell:<command>'")
        fencing.append(raw)

    stsec = top.section("store")
    store = StoreConfig(
        max_message_size=_size(stsec, "max_message_size", StoreConfig.max_message_size),
        default_quota=_size(stsec, "default_quota", 0),
        map_size=_size(stsec, "map_size", StoreConfig.map_size),
        group_commit_max_batch=stsec.integer("group_commit_max_batch", 256, minimum=1, maximum=100000),
    )
    stsec.finish()

    isec = top.section("imap")
    imap = ImapConfig(
        allow_plaintext_login=isec.boolean("allow_plaintext_login", False),
        max_connections_per_user=isec.integer("max_connections_per_user", 20, minimum=1),
        autologout_seconds=isec.integer("autologout_seconds", 1800, minimum=1),
        idle_timeout_seconds=isec.integer("idle_timeout_seconds", 1800, minimum=1),
        envelope_cache=_size(isec, "envelope_cache", ImapConfig.envelope_cache),
        sort_cache=_size(isec, "sort_cache", ImapConfig.sort_cache),
        mailbox_linger_seconds=_linger(isec),
    )
    isec.finish()

    wsec = top.section("web")
    web = WebConfig(
        backup_repo=wsec.path_("backup_repo", None), backup_metrics_file=wsec.path_("backup_metrics_file", None)
    )
    wsec.finish()

    config = ClusterConfig(
        name=name,
        nodes=tuple(nodes),
        zookeeper=zk,
        floating_ip=floating,
        bridge=top.string("bridge", "mailha-br0"),
        bridge_address=top.interface("bridge_address", ClusterConfig.bridge_address),
        storage=storage,
        ports=ports,
        tls=tls,
        fencing=tuple(fencing) or ("netns-kill",),
        store=store,
        imap=imap,
        web=web,
        runtime_dir=top.path_("runtime_dir", ClusterConfig.runtime_dir) or ClusterConfig.runtime_dir,
        health_interval=top.number("health_interval", 0.5),
        service_user=top.string("service_user", "mailha"),
        source=source,
    )
    top.finish()
    return config


def load(path: str | pathlib.Path) -> ClusterConfig:
    """Read and validate cluster.yaml; raise ConfigError naming the bad key."""
    source = pathlib.Path(path)
    try:
        text = source.read_text()
    except OSError as exc:
        raise ConfigError(f"{source}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    return parse(data, source)
