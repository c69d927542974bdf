"""Fencing, storage activation, GARP frames and switchover candidate choice,
without namespaces."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import pathlib
import socket

import pytest

from haagent import fencing, floating_ip, operator, storage
from haagent.coordination import ClusterSnapshot, LeaderRecord, NodeStatus, SwitchoverRequest
from haagent.errors import ActionFailed, SwitchoverRejected
from haagent.metrics import AgentMetrics
from haagent.operator import _candidate
from haagent.states import AgentState
from haagent.supervisor import listening
from mailha_api import store_pb2
from nodeconf import config
from nodeconf.paths import shared_store_dir
from store.bodies import BodySource
from store.engine import MailStore, StoreOptions

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def cluster() -> config.ClusterConfig:
    return config.load(ROOT / "cluster.yaml")


def test_shell_fencing_gets_node_and_epoch(cluster: config.ClusterConfig, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "env"
    cfg = dataclasses.replace(cluster, fencing=(f'shell:echo "$NODE $NAMESPACE $EPOCH $FLOATING_IP" > {out}',))
    result = fencing.fence_blocking(cfg, "node1", 42)
    assert result.method.startswith("shell:")
    ns = cfg.node("node1").namespace
    assert out.read_text().split() == ["node1", ns, "42", str(cfg.floating_ip.address)]


def test_fencing_tries_methods_in_order_and_fails_when_all_fail(cluster: config.ClusterConfig) -> None:
    cfg = dataclasses.replace(cluster, fencing=("shell:exit 3", "shell:echo nope >&2; exit 1"))
    with pytest.raises(
        ActionFailed, match=r"could not fence node2: shell:exit 3: .*exited with 3.*exited with 1: nope"
    ):
        fencing.fence_blocking(cfg, "node2", 7)
    cfg = dataclasses.replace(cluster, fencing=("shell:exit 3", "shell:true"))
    assert fencing.fence_blocking(cfg, "node2", 7).method == "shell:true"


def test_storage_dir_and_shell_activation(tmp_path: pathlib.Path) -> None:
    st = config.StorageConfig(path=tmp_path / "shared")
    storage.activate_blocking(st, "node1", 3)
    assert shared_store_dir(st).is_dir()
    mark = tmp_path / "mounted"
    st2 = config.StorageConfig(path=tmp_path / "s2", activate=f"shell:echo $NODE $EPOCH $STORAGE_PATH > {mark}")
    storage.activate_blocking(st2, "node2", 5)
    assert mark.read_text().split() == ["node2", "5", str(tmp_path / "s2")]
    with pytest.raises(ActionFailed, match="exited with 1"):
        storage.activate_blocking(config.StorageConfig(path=tmp_path / "s3", activate="shell:false"), "n", 1)


def test_gratuitous_arp_frame() -> None:
    mac = bytes.fromhex("020000000001")
    frame = floating_ip.garp_frame(mac, ipaddress.IPv4Address("192.0.2.10"))
    assert len(frame) == 42
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == mac and frame[12:14] == b"\x08\x06"
    arp = frame[14:]
    assert arp[:8] == bytes.fromhex("0001080006040001")  # Ethernet/IPv4, request
    assert arp[8:14] == mac and arp[14:18] == bytes([192, 0, 2, 10])  # sender
    assert arp[18:24] == b"\x00" * 6 and arp[24:28] == bytes([192, 0, 2, 10])  # target = sender: gratuitous


def _snap(*statuses: NodeStatus, paused: bool = False, switchover: SwitchoverRequest | None = None) -> ClusterSnapshot:
    return ClusterSnapshot(1, LeaderRecord("node1", 4, 1, 0.0), 4, statuses, paused, switchover, None)


def test_switchover_candidate_must_be_a_healthy_standby() -> None:
    ok = NodeStatus("node2", "standby", "stopped", 0, 0.0, "")
    assert _candidate(_snap(ok), None) == "node2"
    assert _candidate(_snap(ok), "node2") == "node2"
    with pytest.raises(SwitchoverRejected, match="already active"):
        _candidate(_snap(ok), "node1")
    with pytest.raises(SwitchoverRejected, match="not a healthy standby"):
        _candidate(_snap(NodeStatus("node2", "failed", "failing", 0, 0.0, "")), None)
    with pytest.raises(SwitchoverRejected, match="maintenance"):
        _candidate(_snap(ok, paused=True), None)
    with pytest.raises(SwitchoverRejected, match="pending"):
        _candidate(_snap(ok, switchover=SwitchoverRequest("node1", None, 0.0, 4e9)), None)


def test_rejected_switchover_reports_why_and_closes_the_connection(
    cluster: config.ClusterConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (chaos suite): a rejection used to surface as "cannot join thread before it is started"."""
    closed: list[bool] = []

    class NoStandby:
        def snapshot(self) -> ClusterSnapshot:
            return _snap(NodeStatus("node2", "failed", "failing", 0, 0.0, ""))

        def close(self) -> None:
            closed.append(True)

    monkeypatch.setattr(operator, "_connect", lambda cluster, hosts=None: NoStandby())
    with pytest.raises(SwitchoverRejected, match="not a healthy standby"):
        operator.switchover(cluster)
    assert closed == [True]


def test_listening_reads_the_kernels_socket_table() -> None:
    """How the agent sees early front ends listen on the floating IP before it is local."""
    lo = ipaddress.IPv4Address("127.0.0.1")
    with socket.socket() as sock:
        sock.bind((str(lo), 0))
        port = sock.getsockname()[1]
        assert not listening(lo, port)  # bound, not listening
        sock.listen()
        assert listening(lo, port)
        assert not listening(ipaddress.IPv4Address("127.0.0.2"), port)
    assert not listening(lo, port)


def test_store_size_metric_reports_the_lmdb_data_file(tmp_path: pathlib.Path) -> None:
    """Issue 14: mailha_store_size_bytes said 0 on a store holding mail (wrong path)."""
    store = MailStore(StoreOptions(data_dir=tmp_path / "store"))
    try:
        store.fence(1)
        store.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="pw"))
        # Incompressible: the store keeps bodies zstd-compressed where that pays.
        data = b"Subject: size\r\n\r\n" + os.urandom(200_000)
        header = store_pb2.AppendHeader(epoch=1, user="alice", mailbox="INBOX", size=len(data))
        store.append(header, BodySource(len(data), data=data))
    finally:
        store.close()
    metrics = AgentMetrics("node1")
    metrics.update(AgentState.ACTIVE, 1, 0, True, tmp_path / "store")
    size = metrics.registry.get_sample_value("mailha_store_size_bytes", {"node": "node1"})
    assert size is not None and size >= 200_000
    assert size == (tmp_path / "store" / "lmdb" / "data.mdb").stat().st_size
