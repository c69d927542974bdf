"""Real agents in real namespaces on a real ZooKeeper ensemble."""

from __future__ import annotations

import threading
import time

import pytest

from tests.ha_agent_lab import AgentLab

pytestmark = [pytest.mark.integration, pytest.mark.root]


class HolderSampler:
    """Samples which namespaces hold the floating IP, every few ms, in a thread."""

    def __init__(self, lab: AgentLab) -> None:
        self.lab = lab
        self.samples: list[tuple[float, tuple[str, ...]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), tuple(self.lab.holders())))
            self._stop.wait(0.005)

    def __enter__(self) -> HolderSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def max_holders(self) -> int:
        return max((len(h) for _, h in self.samples), default=0)


def _start_pair(lab: AgentLab) -> tuple[str, str]:
    first, second = lab.names
    lab.start_agent(first)
    lab.wait_for(f"{first} active", lambda: lab.active() == first)
    lab.start_agent(second)
    lab.wait_for(
        f"{second} standby", lambda: (st := lab.snapshot().node_status(second)) is not None and st.state == "standby"
    )
    lab.wait_for("service on the floating IP", lab.serves)
    return first, second


def test_takeover_after_sigkill_of_active_node(agent_lab: AgentLab) -> None:
    first, second = _start_pair(agent_lab)
    assert agent_lab.holders() == [first]
    epoch = agent_lab.snapshot().leader.epoch  # type: ignore[union-attr]
    with HolderSampler(agent_lab) as sampler:
        t0 = time.monotonic()
        assert agent_lab.kill_node(first) >= 3  # agent, store, lmtpd
        agent_lab.wait_for(f"{second} serving", lambda: agent_lab.active() == second and agent_lab.serves(), timeout=15)
        took = time.monotonic() - t0
    assert sampler.max_holders() <= 1, "the floating IP was held by two namespaces"
    assert agent_lab.holders() == [second]
    snap = agent_lab.snapshot()
    assert snap.leader is not None and snap.leader.epoch == epoch + 1
    assert snap.last_active is not None and snap.last_active.node == second
    print(f"kill -> served by {second}: {took:.3f} s")
    assert took < 6.0, f"takeover took {took:.2f} s"
    history = agent_lab.coord.history()
    takeover = [h for h in history if h.node == second and h.to_state == "active"]
    assert takeover and "vanished" in " ".join(h.reason for h in history if h.node == second)
