"""Filling the reference Dovecot's INBOX for `bench compare --mailbox-size`: over LMTP, or the way
an operator bulk-loads it with LMTP kept where delivery is measured.

Dovecot's maildir makes a fill over LMTP O(n^2) (at 50,000 messages its rate falls
from ~325/s for the first 1,000 to ~33/s for the last; ~850 s of the run). What the
side-by-side run reads from the fill is its first-block and last-block delivery rates
and the filled mailbox, so `hybrid` (the default) delivers the first EDGE and the last
EDGE messages over LMTP (the same client and corpus as mailha's fill) and the middle
with `doveadm import` from a maildir of the same corpus (`maildir:DIR:INDEX=MEMORY`,
IMPORT_BATCH messages a run, as one transaction of 48,000 slows down as it grows;
one file per message named so Dovecot's UIDs follow n; the documented migration path,
through the same mail-storage save code LMTP ends in). Each imported message gets the
trace headers Dovecot's LMTP would have put on it (Return-Path, Delivered-To, a
Received of the same shape), so both fills store the same message under every UID,
of the same size (the last EDGE: a few bytes less, as their LMTP session is a new
one and Dovecot's Received id counts transactions per session). `lmtp` delivers every message over LMTP, as before.
"""

from __future__ import annotations

import email.utils
import os
import pwd
import shutil
import socket
import time
from typing import Final

from bench import dovecot
from bench.lmtp_fill import SENDER, Endpoint, WireCorpus, fill_range

METHODS: Final = ("hybrid", "lmtp")
EDGE: Final = 1000  # messages over LMTP at each end of a hybrid fill
FIRST_FILE_TIME: Final = 1_600_000_000  # maildir file names: seconds, so the UID order is n's
IMPORT_BATCH: Final = 4000  # messages per `doveadm import` (one transaction each)
IMPORT_TIMEOUT: Final = 3600.0


def _trace(n: int, rcpt: str, host: str, when: float) -> bytes:
    """The headers Dovecot's LMTP prepends to a delivered message (the same shape and size)."""
    # LMTP's id: the session's 22 characters of base64, then ":T<k>" for the k-th transaction
    # of the session after the first (message n is transaction n + 1 of a one-connection fill).
    ident = f"{n:022d}"[-22:] + (f":T{n + 1}" if n else "")
    stamp = email.utils.formatdate(when, usegmt=False).replace("-0000", "+0000")
    return (
        f"Return-Path: <{SENDER}>\r\nDelivered-To: {rcpt}\r\n"
        f"Received: from bench.test ([127.0.0.1])\r\n\tby {host} with LMTP\r\n\tid {ident}\r\n"
        f"\t(envelope-from <{SENDER}>)\r\n\tfor <{rcpt}>; {stamp}\r\n"
    ).encode()


def _import(
    dove: dovecot.DovecotStack,
    corpus: WireCorpus,
    user: str,
    rcpt: str,
    *,
    first: int,
    end: int,
    batch_size: int = IMPORT_BATCH,
) -> dict[str, float]:
    """Messages first..end-1 into `user`'s INBOX with `doveadm import` from a maildir written for it."""
    mail = pwd.getpwnam(dovecot.MAIL_USER)
    source = dove.directory / "import-source"
    host = socket.gethostname().split(".")[0]
    writing = importing = 0.0
    now = time.time()
    # In batches: one doveadm import saves its messages in one transaction, and at 50,000 that
    # transaction's cost per message grows with its size (48,000 at once: ~110/s falling to ~40/s
    # on a loaded machine, against ~1,800/s for 8,000).
    for batch in range(first, end, batch_size):
        start = time.perf_counter()
        try:
            for sub in ("cur", "new", "tmp"):
                (source / sub).mkdir(parents=True)
            for n in range(batch, min(end, batch + batch_size)):
                path = source / "cur" / f"{FIRST_FILE_TIME + n}.M{n}P0.bench:2,"
                path.write_bytes(_trace(n, rcpt, host, now) + corpus.raw(n))
            for root, _dirs, names in os.walk(source):
                os.chown(root, mail.pw_uid, mail.pw_gid)  # doveadm drops to the mail user
                for name in names:
                    os.chown(os.path.join(root, name), mail.pw_uid, mail.pw_gid)
            written = time.perf_counter()
            dove.doveadm("import", "-u", user, f"maildir:{source}:INDEX=MEMORY", "", "all", timeout=IMPORT_TIMEOUT)
            importing += time.perf_counter() - written
            writing += written - start
        finally:
            shutil.rmtree(source, ignore_errors=True)
    return {
        "import_messages": end - first,
        "import_batch": batch_size,
        "import_source_write_seconds": round(writing, 1),
        "import_seconds": round(importing, 1),
        "import_per_s": round((end - first) / importing, 1) if importing else 0.0,
    }


def fill_dovecot(
    dove: dovecot.DovecotStack,
    corpus: WireCorpus,
    user: str,
    rcpt: str,
    method: str = "hybrid",
    *,
    edge: int = EDGE,
    import_batch: int = IMPORT_BATCH,
) -> dict[str, float | str]:
    """Dovecot's INBOX filled with the whole corpus, by `method` (METHODS); the figures of the fill.
    `edge`: messages over LMTP at each end of a hybrid fill (a corpus of at most 2 x edge goes all over LMTP)."""
    if method not in METHODS:
        raise ValueError(f"--dovecot-fill must be one of {', '.join(METHODS)}, not {method!r}")
    target = Endpoint("127.0.0.1", dove.lmtp_port, rcpt)
    count = len(corpus)
    if method == "lmtp" or count <= 2 * edge:
        result: dict[str, float | str] = dict(fill_range(target, corpus, 0, count))
        result["dovecot_fill"] = "lmtp"
        return result
    start = time.perf_counter()
    head = fill_range(target, corpus, 0, edge)
    middle = _import(dove, corpus, user, rcpt, first=edge, end=count - edge, batch_size=import_batch)
    tail = fill_range(target, corpus, count - edge, count)
    total = time.perf_counter() - start
    lmtp_seconds = float(head["fill_seconds"]) + float(tail["fill_seconds"])
    return {
        "dovecot_fill": "hybrid",
        "delivered": count,
        "raw_bytes": corpus.raw_bytes(0, count),
        "fill_seconds": round(total, 1),
        "lmtp_delivered": 2 * edge,
        # The rate over the LMTP parts only (the first and the last edge), not a whole-fill rate.
        "delivery_lmtp_parts_per_s": round(2 * edge / lmtp_seconds, 1) if lmtp_seconds else 0.0,
        "delivery_first_block_per_s": head["delivery_first_block_per_s"],
        "delivery_last_block_per_s": tail["delivery_last_block_per_s"],
        "client_cpu_ms_per_delivery": round(
            (head["client_cpu_ms_per_delivery"] + tail["client_cpu_ms_per_delivery"]) / 2, 3
        ),
        **middle,
    }
