"""`mailha bench compare --mailbox-size N`: one large INBOX in mailha and in Dovecot, side by side.

Both servers get the same deterministic corpus (bench/mailbox_corpus.py), built
once in wire form before anything is timed (bench/lmtp_fill.py), one after the
other (mailha first, then Dovecot, so neither fill slows the other) with the same
blocking LMTP client (Postfix's transaction shape). mailha is filled entirely
over ONE LMTP connection (its rate is issue 17's target). Dovecot by
`--dovecot-fill` (recorded as `dovecot_fill`; bench/dovecot_fill.py): `hybrid`
(default) the first 1,000 and the last 1,000 over LMTP (its first-block and
last-block rates, which show its O(n^2) maildir fill) and the middle by `doveadm
import` (~850 s less at 50,000); `lmtp` every message over LMTP. Then the same
imaplib measurements (bench/mailbox_measure.py): every
operation of issue 17's table plus SORT and THREAD, each timed on `runs`
fresh connections to one server and then the other (who goes first alternates
from round to round). That measurement is
repeated `rounds` times on the same fill (the mailbox is marked mostly
\\Seen again before each round); the table shows the median of the rounds'
medians and mailha ÷ Dovecot (below 1: mailha is faster). UID FETCH 1:* (FLAGS)
is also timed on a plain socket (`uid_fetch_all_flags_raw_socket`,
bench/mailbox_raw_timing.py): through imaplib the client's own parsing of the
50,000 lines is most of what is timed, for both servers. mailha's RssAnon is
taken idle (filled, past imapd's mailbox linger) and again after every session
closed, past the linger, as `mailha bench mailbox` does. The load average is
recorded with each round: the machine is shared.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Final

from bench import dovecot
from bench.dovecot_fill import METHODS, fill_dovecot
from bench.large_mailbox import MAILBOX_LINGER, MAX_SIZE, PASSWORD, RCPT, SETTLE, USER, mailha_under_test
from bench.lmtp_fill import Endpoint, WireCorpus, fill_range
from bench.mailbox_measure import ImapTarget, mark_mostly_seen, measure_side_by_side
from bench.mailbox_raw_timing import raw_command_ms

SERVERS: Final = ("mailha", "dovecot")


@dataclass(frozen=True)
class MailboxCompareOptions:
    size: int = 50_000
    runs: int = 5  # fresh connections per operation and round
    rounds: int = 3
    seed: int = 1
    fulltext: bool = True
    local_reads: bool = True  # mailha's imapd reads beside its store, as in standalone mode
    dovecot_fill: str = "hybrid"  # bench/dovecot_fill.py METHODS
    json_output: bool = False
    output: pathlib.Path | None = pathlib.Path("bench-results/compare-mailbox.json")


def loadavg() -> str:
    try:
        return " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2) if values else 0.0


def summarize(rounds: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per server, the median over rounds of each figure; `ratio` = mailha ÷ Dovecot per figure."""
    out: dict[str, dict[str, float]] = {}
    for server in SERVERS:
        keys = rounds[0][server].keys()
        out[server] = {k: _median([r[server][k] for r in rounds if k in r[server]]) for k in keys}
    dc = out["dovecot"]
    out["ratio"] = {k: round(v / dc[k], 3) for k, v in out["mailha"].items() if dc.get(k) and k.endswith("_ms")}
    return out


def run(opts: MailboxCompareOptions) -> dict[str, object]:
    if not 1 <= opts.size <= MAX_SIZE:
        raise ValueError(f"--mailbox-size must be 1..{MAX_SIZE}")
    if opts.dovecot_fill not in METHODS:
        raise ValueError(f"--dovecot-fill must be one of {', '.join(METHODS)}")
    reason = dovecot.available()
    if reason is not None:
        raise dovecot.DovecotUnavailable(reason)
    result: dict[str, object] = {"size": opts.size, "runs": opts.runs, "rounds_count": opts.rounds}
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mailha-cmp-mbox-") as tmp:
        os.chmod(tmp, 0o755)
        built = time.perf_counter()
        corpus = WireCorpus.build(pathlib.Path(tmp), opts.size, opts.seed)
        result["corpus_build_seconds"] = round(time.perf_counter() - built, 1)
        dove = dovecot.DovecotStack(directory=pathlib.Path(tmp) / "dovecot")
        dove.directory.mkdir()
        result["mailha_imapd_local_reads"] = opts.local_reads
        mailha_dir = pathlib.Path(tmp) / "mailha"
        with mailha_under_test(mailha_dir, fulltext=opts.fulltext, local_reads=opts.local_reads) as mailha:
            try:
                dove.start({USER: PASSWORD})
                fills: dict[str, dict[str, float | str]] = {
                    "mailha": dict(fill_range(Endpoint("127.0.0.1", mailha.lmtp_port, RCPT), corpus, 0, opts.size))
                }
                fills["dovecot"] = fill_dovecot(dove, corpus, USER, RCPT, opts.dovecot_fill)
                result["fill"] = fills
                result["dovecot_fill"] = fills["dovecot"]["dovecot_fill"]
                result["fill_loadavg"] = loadavg()
                if opts.fulltext:
                    mailha.wait_indexed(opts.size)
                # Idle as `bench mailbox` takes it: filled, one session served, past the linger.
                mailha.target.connect().logout()
                time.sleep(MAILBOX_LINGER + SETTLE)
                result["mailha_rss_idle"] = mailha.rss()
                targets = {"mailha": mailha.target, "dovecot": ImapTarget("127.0.0.1", dove.imap_port, USER, PASSWORD)}
                rounds: list[dict[str, dict[str, float]]] = []
                loads: list[str] = []
                for r in range(opts.rounds):
                    order = dict(list(targets.items())[:: 1 if r % 2 == 0 else -1])  # who goes first alternates
                    for target in order.values():
                        mark_mostly_seen(target)
                    measured = measure_side_by_side(order, opts.runs)
                    for name, target in order.items():
                        # The server's part of the big FLAGS answer, without imaplib's parsing of it.
                        raw = raw_command_ms(target, "UID FETCH 1:* (FLAGS)", opts.runs)
                        measured[name]["uid_fetch_all_flags_raw_socket_ms"] = raw["ms"]
                    rounds.append(measured)
                    loads.append(loadavg())
                # Every session closed: past imapd's mailbox linger, then released (as `bench mailbox`).
                time.sleep(MAILBOX_LINGER + SETTLE)
                result["mailha_rss_after"] = mailha.rss()
                result["mailha_disk"] = mailha.disk(int(fills["mailha"]["raw_bytes"]))
            except Exception:
                print(mailha.logs_tail() + dove.errors(), file=sys.stderr)
                raise
            finally:
                dove.stop()
                corpus.close()
    result["rounds"] = rounds
    result["loadavg_per_round"] = loads
    result["summary"] = summarize(rounds)
    result["wall_seconds"] = round(time.perf_counter() - wall, 1)
    return result


def _emit(opts: MailboxCompareOptions, result: dict[str, object]) -> None:
    if opts.output is not None:
        opts.output.parent.mkdir(parents=True, exist_ok=True)
        opts.output.write_text(json.dumps(result, indent=2) + "\n")
    if opts.json_output:
        print(json.dumps(result))
        return
    summary = result["summary"]
    fills = result["fill"]
    assert isinstance(summary, dict) and isinstance(fills, dict)
    mh, dc, ratio = summary["mailha"], summary["dovecot"], summary["ratio"]
    print(f"one INBOX of {opts.size} messages; median of {opts.rounds} rounds x {opts.runs} fresh imaplib connections")
    print(f"{'operation':32} {'mailha':>10} {'dovecot':>10} {'ratio':>7}   (ms; ratio = mailha / dovecot)")
    for key in mh:
        if key.endswith("_ms"):
            print(f"{key.removesuffix('_ms'):32} {mh[key]:10.1f} {dc.get(key, 0.0):10.1f} {ratio.get(key, 0.0):7.2f}")
    for key in ("unseen_hits", "subject_hits", "text_hits"):
        print(f"{key:32} {mh[key]:10.0f} {dc[key]:10.0f}")
    for key in ("delivery_per_s", "delivery_first_block_per_s", "delivery_last_block_per_s", "fill_seconds"):
        cells = [f"{fills[s][key]:10.1f}" if key in fills[s] else f"{'-':>10}" for s in SERVERS]
        print(f"{key:32} {' '.join(cells)}")
    print(f"dovecot fill: {result['dovecot_fill']}; the run took {result['wall_seconds']} s")
    print(f"mailha disk: {result['mailha_disk']}")
    print(f"mailha RSS idle {result['mailha_rss_idle']}, after the sessions closed {result['mailha_rss_after']}")
    print(f"load average: fill {result['fill_loadavg']}; rounds {result['loadavg_per_round']}")
    reads = "beside the store (standalone mode)" if result["mailha_imapd_local_reads"] else "over gRPC only"
    print(f"mailha's imapd reads {reads}")


def run_mailbox_compare(opts: MailboxCompareOptions) -> int:
    try:
        result = run(opts)
    except (dovecot.DovecotUnavailable, ValueError) as exc:
        print(f"mailha bench compare: {exc}", file=sys.stderr)
        return 2
    _emit(opts, result)
    summary = result["summary"]
    assert isinstance(summary, dict)
    hits = ("unseen_hits", "subject_hits", "text_hits")
    same = all(summary["mailha"][k] == summary["dovecot"][k] for k in hits)
    if not same:
        print("mailha bench compare: the servers' SEARCH answers differ in size", file=sys.stderr)
    return 0 if same else 1
