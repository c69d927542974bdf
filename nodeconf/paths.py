"""Where a node keeps its files: the one owner of these paths.

Standalone: everything under the --data directory. Cluster: each node's
runtime files under cluster.yaml's runtime_dir/NODE/ (the agent writes them,
`mailha cluster`, the web console and the tests read them).
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

from nodeconf.config import ClusterConfig, StorageConfig


@dataclass(frozen=True)
class StandalonePaths:
    data_dir: pathlib.Path

    @property
    def store_dir(self) -> pathlib.Path:
        return self.data_dir / "store"

    @property
    def run_dir(self) -> pathlib.Path:
        return self.data_dir / "run"

    @property
    def store_socket(self) -> str:
        return f"unix:{self.run_dir / 'store.sock'}"

    @property
    def tls_dir(self) -> pathlib.Path:
        return self.data_dir / "tls"


def shared_store_dir(storage: StorageConfig) -> pathlib.Path:
    """The store's LMDB environment directory inside the cluster's shared storage."""
    return storage.path / "store"


def node_runtime_dir(cfg: ClusterConfig, node: str) -> pathlib.Path:
    return cfg.runtime_dir / node


def store_socket_path(cfg: ClusterConfig, node: str) -> pathlib.Path:
    """Where `node`'s store listens (gRPC on a unix socket: `unix:<path>`)."""
    return node_runtime_dir(cfg, node) / "store.sock"


def store_address(cfg: ClusterConfig, node: str) -> str:
    """The store's gRPC address on `node`."""
    return f"unix:{store_socket_path(cfg, node)}"


def agent_pid_file(cfg: ClusterConfig, node: str) -> pathlib.Path:
    return node_runtime_dir(cfg, node) / "agent.pid"


def agent_log_file(cfg: ClusterConfig, node: str) -> pathlib.Path:
    return node_runtime_dir(cfg, node) / "agent.log"
