"""`mailha bench mailbox` end to end on a small mailbox: it fills, measures and finds what the corpus holds."""

from __future__ import annotations

import json
import pathlib
import socket

from bench.large_mailbox import USER, MailboxBenchOptions, mailha_under_test, run_bench
from bench.mailbox_corpus import BODY_MARKER, SUBJECT_MARKER, message
from bench.mailbox_import_fill import fill_by_import
from bench.mailbox_raw_timing import raw_command_ms, read_until


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
    # both baselines: login-only ("cold") and after the warm-up session the bound is checked on
    assert result["store_rss_anon_cold_idle_kib"] > 0 and result["imapd_rss_anon_closed_per_cold_idle"] > 0


def test_import_fill_stores_the_corpus_as_lmtp_would(tmp_path: pathlib.Path) -> None:
    """--fill import: the corpus through a named pipe into `mailha import mbox` lands byte for byte, in order."""
    with mailha_under_test(tmp_path, fulltext=False, mailbox_linger=0.5) as mailha:
        result = fill_by_import(
            tmp_path,
            store_addr=mailha.store_addr,
            epoch=mailha.epoch,
            user=USER,
            count=205,
            seed=1,
            store_pid=mailha.store_pid,
        )
        assert result["delivered"] == 205
        assert result["raw_bytes"] == sum(len(message(n)) for n in range(205))
        assert result["mbox_bytes"] > result["raw_bytes"]  # From_ lines and Status: headers
        assert result["store_rss_peak_while_filling_kib"] > 0
        imap = mailha.target.connect()
        try:
            typ, data = imap.select("INBOX")
            assert typ == "OK" and data[0] == b"205"
            for n in (0, 99, 204):  # n = 99 carries the base64 attachment
                typ, fetched = imap.uid("FETCH", str(n + 1), "(FLAGS BODY.PEEK[])")
                assert typ == "OK"
                first = fetched[0]
                assert isinstance(first, tuple) and first[1] == message(n)
                assert b"\\Seen" not in first[0]  # imported unread, as LMTP delivers
            raw = raw_command_ms(mailha.target, "UID FETCH 1:* (FLAGS)", 1)
            assert raw["ms"] > 0 and 205 * 20 < raw["reply_bytes"] < 205 * 80  # one FLAGS line per message
        finally:
            imap.logout()


def test_raw_reader_finds_the_tagged_line_across_reads() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b"* 1 FETCH (FLAGS ())\r\n* 2 FETCH (FLAGS (\\Seen))\r\nt")
        theirs.sendall(b" OK done\r\n* BYE\r\n")
        buf = bytearray()
        line, before = read_until(ours, buf, b"t ")
        assert line == b"t OK done" and before == 49 and buf == bytearray(b"* BYE\r\n")
