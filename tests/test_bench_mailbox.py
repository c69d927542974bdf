"""`mailha bench mailbox` end to end on a small mailbox: it fills, measures and finds what the corpus holds."""

from __future__ import annotations

import json
import pathlib

from bench.large_mailbox import MailboxBenchOptions, run_bench
from bench.mailbox_corpus import BODY_MARKER, SUBJECT_MARKER, message


def test_corpus_is_deterministic_and_sized_like_mail() -> None:
    assert message(3) == message(3) and message(3) != message(4)
    sizes = [len(message(n)) for n in range(300)]
    assert all(2000 <= s <= 9000 for n, s in enumerate(sizes) if n % 100 != 99)
    assert all(s > 40_000 for n, s in enumerate(sizes) if n % 100 == 99)  # 1% with a 50 KB attachment
    assert SUBJECT_MARKER.encode() in message(107) and BODY_MARKER.encode() in message(142)


def test_bench_mailbox_small_run(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "mailbox.json"
    only = frozenset({"select", "status"})
    options = MailboxBenchOptions(
        size=250, runs=1, json=True, out=str(out), only=only, connections=2, mailbox_linger=0.5
    )
    assert run_bench(options) == 0
    result = json.loads(out.read_text())
    assert result["delivered"] == 250 and result["messages"] == 250 and result["fill_connections"] == 2
    assert result["unseen_hits"] == 3  # sequence numbers 1, 101, 201 stay unseen
    assert result["subject_hits"] == 3 and result["text_hits"] == 3  # n % 100 == 7 and == 42
    assert result["select_ms"] > 0 and result["status_ms"] > 0
    assert "uid_search_text_ms" not in result  # --only was honoured
    assert result["disk_per_raw"] > 0 and result["imapd_rss_anon_closed_kib"] > 0
    assert result["imapd_rss_anon_idle_kib"] > 0 and result["store_rss_anon_closed_per_idle"] > 0
