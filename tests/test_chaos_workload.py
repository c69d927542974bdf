"""The workload against a tiny fake IMAP server: real sockets, real imaplib, the checker on the result."""

from __future__ import annotations

import pathlib

import pytest

from chaos.checker import check
from chaos.history import EventType, HistoryWriter, Op, pair, read_history
from chaos.workload import (
    Workload,
    WorkloadConfig,
    final_read,
    parse_fetch_ids,
    parse_status,
    prepare_mailboxes,
    tagged_message,
)
from tests.chaos_fake_imap import FakeImapServer, FakeState


def _run(server: FakeImapServer, tmp_path: pathlib.Path, seconds: float = 1.5) -> tuple[HistoryWriter, bool]:
    cfg = WorkloadConfig(host="127.0.0.1", port=server.port, tls="plain", run_id="t1", clients=3, op_timeout=5.0)
    history = HistoryWriter(tmp_path / "history.jsonl")
    prepare_mailboxes(cfg, timeout=10)
    workload = Workload(cfg, history)
    workload.start(seconds)
    workload.join(seconds + 15)
    assert not any(t.is_alive() for t in workload.threads)
    ok = final_read(cfg, history, workload.mailboxes(), timeout=10)
    history.close()
    return history, ok


def test_workload_on_a_correct_server_is_valid(tmp_path: pathlib.Path) -> None:
    with FakeImapServer() as server:
        history, ok = _run(server, tmp_path)
    assert ok
    events = read_history(tmp_path / "history.jsonl")
    assert events == history.events()
    result = check(events)
    assert result.valid, result.violations
    ops = pair(events)
    kinds = {op.f for op in ops if op.outcome is EventType.OK}
    assert {Op.APPEND, Op.FETCH, Op.STORE, Op.EXPUNGE, Op.STATUS, Op.IDLE, Op.FINAL_READ} <= kinds
    assert result.writes_acknowledged > 20
    assert result.unknown == 0 and result.failed == 0
    # Scratch messages were expunged; checked ones all came back.
    final_ids = {
        m["chaos_id"]
        for op in ops
        if op.f is Op.FINAL_READ
        for m in op.event().list_("messages")
        if isinstance(m, dict)
    }
    acked = {op.invoke.str_("chaos_id") for op in ops if op.f is Op.APPEND and op.outcome is EventType.OK}
    scratch = {op.invoke.str_("chaos_id") for op in ops if op.f is Op.APPEND and op.invoke.bool_("scratch")}
    assert acked - scratch <= final_ids
    assert scratch and not (scratch & final_ids)


def test_dropped_connections_are_unknown_not_lost(tmp_path: pathlib.Path) -> None:
    with FakeImapServer(FakeState(drop_after_commit_every=5)) as server:
        _, ok = _run(server, tmp_path)
    assert ok
    result = check(read_history(tmp_path / "history.jsonl"))
    assert result.valid, result.violations
    assert result.writes_unknown > 0
    assert result.unknown_present == result.writes_unknown  # the fake committed every one of them


def test_an_acknowledged_but_lost_append_is_caught(tmp_path: pathlib.Path) -> None:
    with FakeImapServer(FakeState(lose_every=7)) as server:
        _, ok = _run(server, tmp_path)
    assert ok
    result = check(read_history(tmp_path / "history.jsonl"))
    assert not result.valid
    assert result.lost
    assert all(cid.startswith("t1-c") for cid in result.lost)


def test_a_torn_append_is_caught_by_its_size(tmp_path: pathlib.Path) -> None:
    with FakeImapServer(FakeState(truncate_every=6)) as server:
        _, ok = _run(server, tmp_path)
    assert ok
    result = check(read_history(tmp_path / "history.jsonl"))
    assert "size-mismatch" in {v.rule for v in result.violations}
    assert not result.lost


def test_no_server_means_no_final_read_and_an_invalid_result(tmp_path: pathlib.Path) -> None:
    server = FakeImapServer()
    port = server.port
    server.server_close()  # nothing listens there now
    cfg = WorkloadConfig(host="127.0.0.1", port=port, tls="plain", run_id="t2", clients=1)
    history = HistoryWriter()
    workload = Workload(cfg, history)
    workload.start(0.5)
    workload.join(10)
    op_id = history.invoke("imap-0", Op.APPEND, {"chaos_id": "t2-c0-1", "mailbox": "chaos-a"})
    history.complete("imap-0", Op.APPEND, op_id, EventType.UNKNOWN)
    assert not final_read(cfg, history, ("chaos-a",), timeout=1.0)
    result = check(history.events())
    assert not result.valid
    assert [v.rule for v in result.violations] == ["unchecked"]


def test_parsers() -> None:
    data: list[object] = [
        (b"1 (UID 4 RFC822.SIZE 300 BODY[HEADER.FIELDS (X-CHAOS-ID)] {22}", b"X-Chaos-Id: r-c1-9\r\n\r\n"),
        b")",
        (b"2 (UID 6 BODY[HEADER.FIELDS (X-CHAOS-ID)] {2}", b"\r\n"),
        b")",
    ]
    assert parse_fetch_ids(data) == [(4, "r-c1-9", 300), (6, None, None)]
    assert parse_status([b'"chaos-a" (UIDNEXT 12 UIDVALIDITY 3 HIGHESTMODSEQ 40 MESSAGES 5)']) == {
        "uidnext": 12,
        "uidvalidity": 3,
        "highestmodseq": 40,
        "messages": 5,
    }


@pytest.mark.parametrize("size", [0, 5000])
def test_tagged_message_carries_its_identity(size: int) -> None:
    msg = tagged_message("r-c1-1", size)
    assert b"\r\nX-Chaos-Id: r-c1-1\r\n" in msg
    assert b"Message-ID: <r-c1-1@chaos.mailha.test>" in msg
    assert len(msg) >= size
