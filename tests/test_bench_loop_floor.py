"""bench/loop_floor.py: the wait/read/write floor under imapd's per-command cost."""

from __future__ import annotations

from bench.loop_floor import measure


def test_each_floor_loop_answers_imaplib_and_reports_its_cpu() -> None:
    for loop in ("trio", "epoll"):
        cpu = measure(loop, 50)
        # Answering a NOOP costs this process some CPU (a read and a write at least), and on
        # any machine far less than a millisecond.
        assert 0 < cpu < 1000, (loop, cpu)
