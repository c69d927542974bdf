"""A session that falls behind a fast import: `mailha bench behind [--size N] [--dovecot]`.

Session a (imaplib) logs in, SELECTs INBOX and then sends nothing while N messages
are delivered into that INBOX over LMTP (one commit each, as fast as one LMTP
connection goes); then a's NOOP is timed, and a's `UID FETCH 1:* (UID)` is compared
with a fresh session's. With N beyond imapd's per-session buffer (2,000 events) a
falls behind and resynchronises from the store at that NOOP (issue 17: before, it
was cut off with BYE). Each run adds N more messages to the same INBOX; with
--dovecot the same runs on a throwaway Dovecot, alternating, in the same process.
"""

from __future__ import annotations

import argparse
import imaplib
import json
import os
import pathlib
import statistics
import tempfile
import time
from typing import Any

from bench import dovecot
from bench.large_mailbox import PASSWORD, RCPT, USER, fill, mailha_under_test
from bench.mailbox_compare import loadavg


def _one(port: int, lmtp_port: int, size: int, seed: int) -> dict[str, float]:
    behind = imaplib.IMAP4("127.0.0.1", port)
    fresh: imaplib.IMAP4 | None = None
    try:
        behind.login(USER, PASSWORD)
        behind.select("INBOX")
        delivered = fill("127.0.0.1", lmtp_port, RCPT, size, seed)
        start = time.perf_counter()
        behind.noop()  # imaplib raises on BYE: a session cut off ends the run
        noop_ms = (time.perf_counter() - start) * 1000
        # Another process's last deliveries may reach a session's feed a moment after their
        # LMTP answer (both servers): let them arrive, then compare with a fresh session.
        time.sleep(0.5)
        behind.noop()
        told = behind.untagged_responses.get("EXISTS", [b"0"])[-1]
        exists = int(told if isinstance(told, bytes) else told[0])
        _, mine = behind.uid("FETCH", "1:*", "(UID)")
        fresh = imaplib.IMAP4("127.0.0.1", port)
        fresh.login(USER, PASSWORD)
        fresh.select("INBOX", readonly=True)
        _, theirs = fresh.uid("FETCH", "1:*", "(UID)")
        return {
            "noop_ms": noop_ms,
            "exists": exists,
            "messages": len(theirs),
            "same_as_fresh": float(mine == theirs and exists == len(theirs)),
            "delivery_per_s": delivered["delivery_per_s"],
        }
    finally:
        behind.logout()
        if fresh is not None:
            fresh.logout()


def _summary(runs: list[dict[str, float]], prefix: str) -> dict[str, Any]:
    return {
        f"{prefix}noop_ms_median": round(statistics.median(r["noop_ms"] for r in runs), 1),
        f"{prefix}noop_ms": [round(r["noop_ms"], 1) for r in runs],
        f"{prefix}messages": [int(r["messages"]) for r in runs],
        f"{prefix}same_as_fresh": all(r["same_as_fresh"] for r in runs),
        f"{prefix}delivery_per_s": [r["delivery_per_s"] for r in runs],
    }


def run(size: int, runs: int, *, with_dovecot: bool = False) -> dict[str, Any]:
    if size < 1 or runs < 1:
        raise ValueError("--size and --runs must be at least 1")
    result: dict[str, Any] = {"size": size, "runs": runs}
    with tempfile.TemporaryDirectory(prefix="mailha-behind-") as tmp:
        os.chmod(tmp, 0o755)  # Dovecot's unprivileged processes reach their directory
        reference = None
        with mailha_under_test(pathlib.Path(tmp) / "mailha", fulltext=False) as mailha:
            try:
                if with_dovecot:
                    reference = dovecot.DovecotStack(directory=pathlib.Path(tmp) / "dovecot")
                    reference.directory.mkdir()
                    reference.start({USER: PASSWORD})
                ours: list[dict[str, float]] = []
                theirs: list[dict[str, float]] = []
                for r in range(runs):
                    ours.append(_one(mailha.target.port, mailha.lmtp_port, size, r))
                    if reference is not None:
                        theirs.append(_one(reference.imap_port, reference.lmtp_port, size, r))
                result.update(_summary(ours, ""))
                if theirs:
                    result.update(_summary(theirs, "dovecot_"))
                    result["noop_vs_dovecot"] = round(
                        result["noop_ms_median"] / max(result["dovecot_noop_ms_median"], 0.01), 3
                    )
                result["loadavg"] = loadavg()
            finally:
                if reference is not None:
                    reference.stop()
    return result


def main(args: argparse.Namespace) -> int:
    result = run(args.size, args.runs, with_dovecot=args.dovecot)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:24} {value}")
    return 0 if result["same_as_fresh"] and result.get("dovecot_same_as_fresh", True) else 1
