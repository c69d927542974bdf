"""Chaos smoke subset against a private demo cluster (namespaces, ZooKeeper, real agents).

Each scenario runs its real faults for a bounded time with the real
workload, then the checker must find nothing lost, duplicated or violated.
"""

from __future__ import annotations

import io
import os
import pathlib
import threading
from collections.abc import Iterator

import pytest

from chaos.runner import RunOptions, run_scenario
from chaos.scenarios import SCENARIOS, SMOKE
from lab.cluster import cluster_down, cluster_up
from nodeconf.config import ClusterConfig
from tests.ha_lab_fixtures import lab_config

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.chaos, pytest.mark.slow]

SECONDS = 35.0


@pytest.fixture(scope="module")
def chaos_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterConfig]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, nftables)")

    cfg = lab_config(tmp_path_factory.mktemp("chaos"))
    try:
        cluster_up(cfg, timeout=120, out=io.StringIO(), demo_user=False)
        yield cfg
    finally:
        cluster_down(cfg, out=io.StringIO())


@pytest.mark.parametrize("name", SMOKE)
def test_smoke_scenario(chaos_cluster: ClusterConfig, name: str, tmp_path: pathlib.Path) -> None:
    report = run_scenario(chaos_cluster, SCENARIOS[name], RunOptions(SECONDS, tmp_path), threading.Event())
    r = report.result
    detail = f"{report.error} lost={r.lost[:5]} dup={r.duplicated[:5]} violations={list(r.violations[:5])}"
    assert report.error is None, detail
    assert r.faults >= 1, detail
    assert r.final_read, detail
    assert r.writes_acknowledged > 0, detail
    assert not r.lost, detail
    assert not r.duplicated, detail
    assert not r.violations, detail
