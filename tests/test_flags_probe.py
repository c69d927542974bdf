"""bench/flags_probe.py: its arithmetic, its floor server's answers and its counting reader (no servers)."""

from __future__ import annotations

import io
import socket
import threading

from bench.flags_probe import (
    ClientSnapshot,
    CountingSocketReader,
    SchedStat,
    decompose,
    floor_answer,
    parse_schedstat,
    send_parts,
    summarize,
    turned,
)


def test_schedstat_fields_are_cpu_wait_and_slices() -> None:
    assert parse_schedstat("123456 7890 42\n") == SchedStat(123456, 7890, 42)


def _snap(at: float, cpu_ns: int, wait_ns: int, *times: float) -> ClientSnapshot:
    """times: user s, sys s, voluntary and involuntary switches."""
    user, sys_s, vol, invol = times
    return ClientSnapshot(at, SchedStat(cpu_ns, wait_ns, 0), user, sys_s, int(vol), int(invol))


def test_blocked_is_wall_less_on_cpu_less_run_queue_wait() -> None:
    before = _snap(10.0, 1_000_000_000, 5_000_000, 1.0, 0.5, 3, 1)
    # 180 ms of wall: 150 ms on a CPU (140 user, 10 sys), 12 ms runnable and waiting, so 18 ms blocked.
    after = _snap(10.180, 1_150_000_000, 17_000_000, 1.140, 0.510, 9, 4)
    got = decompose(
        before,
        after,
        first_byte_at=10.0005,
        recvs=255,
        nbytes=2_025_310,
        gc_s=0.004,
        gc_runs=7,
        server_cpu_ns=17_500_000,
        server_wakeups=40,
        select_ms=0.8,
    )
    assert (got.wall_ms, got.oncpu_ms, got.runq_ms, got.blocked_ms) == (180.0, 150.0, 12.0, 18.0)
    assert (got.user_ms, got.sys_ms) == (140.0, 10.0)
    assert (got.first_byte_ms, got.voluntary, got.involuntary) == (0.5, 6, 3)
    assert (got.gc_ms, got.gc_runs, got.server_cpu_ms, got.server_wakeups) == (4.0, 7, 17.5, 40)


def test_no_byte_read_shows_as_minus_one() -> None:
    snap = _snap(1.0, 0, 0, 0.0, 0.0, 0, 0)
    got = decompose(
        snap,
        snap,
        first_byte_at=None,
        recvs=0,
        nbytes=0,
        gc_s=0.0,
        gc_runs=0,
        server_cpu_ns=0,
        server_wakeups=0,
        select_ms=0.0,
    )
    assert got.first_byte_ms == -1.0


def test_floor_answers_the_fetch_with_the_recorded_reply_then_its_tag() -> None:
    reply = b"* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n* 2 FETCH (UID 2 FLAGS ())\r\n"
    answer, close = floor_answer(b"ABCD3 UID FETCH 1:* (FLAGS)\r\n", reply, 2)
    assert answer == [reply, b"ABCD3 OK FETCH completed\r\n"] and answer[0] is reply and not close
    answer, close = floor_answer(b"ABCD2 SELECT INBOX\r\n", reply, 2)
    assert answer[0].startswith(b"* 2 EXISTS\r\n") and answer[0].endswith(b"ABCD2 OK [READ-WRITE] SELECT completed\r\n")
    answer, close = floor_answer(b"ABCD4 LOGOUT\r\n", reply, 2)
    assert answer == [b"* BYE\r\nABCD4 OK LOGOUT completed\r\n"] and close


def test_floor_parts_arrive_whole_and_in_order_after_partial_sends() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # many partial sendmsg calls
        parts = [b"a" * 300_000, b"", b"b" * 5, b"c" * 70_000]
        got = bytearray()

        def drain() -> None:
            while len(got) < 370_005:
                got.extend(right.recv(65536))

        reader = threading.Thread(target=drain)
        reader.start()
        send_parts(left, parts)
        reader.join(timeout=30)
        assert bytes(got) == b"".join(parts)


def _counts(reader: CountingSocketReader) -> tuple[int, int, float | None]:
    return reader.recvs, reader.nbytes, reader.first_at


def test_counting_reader_counts_socket_reads_under_a_buffered_reader() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.sendall(b"x" * 10_000 + b"\r\n")
        right.shutdown(socket.SHUT_WR)
        reader = CountingSocketReader(left)
        buffered = io.BufferedReader(reader, 4096)
        assert len(buffered.readline()) == 10_002
        assert reader.nbytes == 10_002 and reader.first_at is not None
        assert reader.recvs >= 2  # more than one buffer's worth
        reader.reset()
        assert _counts(reader) == (0, 0, None)


def test_every_target_goes_first_in_turn_and_medians_are_per_field() -> None:
    names = ["floor", "dovecot", "mailha"]
    assert [turned(names, r)[0] for r in range(4)] == ["floor", "dovecot", "mailha", "floor"]
    snap = _snap(0.0, 0, 0, 0.0, 0.0, 0, 0)
    samples = [
        decompose(
            snap,
            _snap(t, 0, 0, 0.0, 0.0, 0, 0),
            first_byte_at=None,
            recvs=r,
            nbytes=0,
            gc_s=0.0,
            gc_runs=0,
            server_cpu_ns=0,
            server_wakeups=0,
            select_ms=0.0,
        )
        for t, r in ((0.1, 3), (0.3, 1), (0.2, 2))
    ]
    got = summarize({"mailha": samples})["mailha"]
    assert (got["wall_ms"], got["recvs"]) == (200.0, 2.0)
