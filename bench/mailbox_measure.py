"""Times the operations of a large-mailbox session with imaplib, against any IMAP server.

Each operation is timed on `runs` fresh connections (login and SELECT are not
part of the time, except for SELECT itself) and reported as the median in ms.
It needs only (host, port, user, password), so the same code measures mailha,
Dovecot or anything else filled with the same corpus (bench/mailbox_corpus.py).
"""

from __future__ import annotations

import imaplib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from bench.mailbox_corpus import BODY_MARKER, SUBJECT_MARKER

COPY_TARGET: Final = "BenchCopy"
MARK_RANGE: Final = 100_000  # messages per STORE when marking the mailbox read
# imaplib refuses a response line over 1,000,000 bytes; a SORT or SEARCH answer over a
# million-message mailbox is one line of ~7 MB (the client's limit, not the server's).
imaplib._MAXLINE = 64 * 1024 * 1024  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ImapTarget:
    host: str
    port: int
    user: str
    password: str
    mailbox: str = "INBOX"

    def connect(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4(self.host, self.port)
        typ, _ = imap.login(self.user, self.password)
        if typ != "OK":
            raise RuntimeError("login failed")
        return imap


def _ok(result: tuple[str, Sequence[object]]) -> Sequence[object]:
    typ, data = result
    if typ != "OK":
        raise RuntimeError(f"command failed: {data!r}")
    return data


def _timed(target: ImapTarget, runs: int, op: Callable[[imaplib.IMAP4], object], *, select: bool = True) -> float:
    """Median ms of `op` over `runs` fresh connections."""
    times: list[float] = []
    for _ in range(runs):
        imap = target.connect()
        try:
            if select:
                _ok(imap.select(target.mailbox))
            start = time.perf_counter()
            op(imap)
            times.append((time.perf_counter() - start) * 1000)
        finally:
            imap.logout()
    return round(statistics.median(times), 1)


def _exists(target: ImapTarget) -> int:
    imap = target.connect()
    try:
        data = _ok(imap.select(target.mailbox, readonly=True))
        first = data[0]
        return int(first) if isinstance(first, (bytes, str)) else 0
    finally:
        imap.logout()


def mark_mostly_seen(target: ImapTarget) -> None:
    """Every message \\Seen except 1% (sequence numbers n % 100 == 1): a read mailbox."""
    imap = target.connect()
    try:
        _ok(imap.select(target.mailbox))
        exists = _exists_of(imap)
        # In ranges: mailha's imapd gives a store write 30 s, and one STORE over a million
        # messages takes its store longer than that (~40 µs a message, measured at 1M).
        for first in range(1, exists + 1, MARK_RANGE):
            _ok(imap.store(f"{first}:{min(exists, first + MARK_RANGE - 1)}", "+FLAGS.SILENT", "(\\Seen)"))
        # The 1% left unread, 1,000 sequence numbers per STORE: at a million messages one
        # list of 10,000 is a 69 KB command line, which imapd refuses (BAD [TOOBIG]).
        unseen = list(range(1, exists + 1, 100))
        for at in range(0, len(unseen), 1000):
            _ok(imap.store(",".join(map(str, unseen[at : at + 1000])), "-FLAGS.SILENT", "(\\Seen)"))
    finally:
        imap.logout()


def warm_up(target: ImapTarget, messages: str = "1:20") -> None:
    """One session running the table's reads on a few messages: what a server creates on first
    use of each command (code paths, the mailbox's reader) is then part of an idle baseline,
    not counted as what the large sessions left behind (the memory test's idle, issue 17)."""
    imap = target.connect()
    try:
        _ok(imap.select(target.mailbox))
        _ok(imap.uid("FETCH", messages, "(FLAGS)"))
        _ok(imap.fetch(messages, "(UID ENVELOPE FLAGS RFC822.SIZE INTERNALDATE)"))
        _ok(imap.uid("SEARCH", "UNSEEN", messages))
        _ok(imap.uid("SEARCH", "SUBJECT", SUBJECT_MARKER, messages))
        _ok(imap.uid("SEARCH", "TEXT", BODY_MARKER, messages))
        _ok(imap.uid("SORT", "(REVERSE DATE)", "UTF-8", messages))
        _ok(imap.uid("THREAD", "REFERENCES", "UTF-8", messages))
        _ok(imap.status(target.mailbox, "(MESSAGES UNSEEN UIDNEXT)"))
    finally:
        imap.logout()


def _exists_of(imap: imaplib.IMAP4) -> int:
    typ, data = imap.response("EXISTS")
    if typ == "EXISTS" and data and isinstance(data[-1], bytes):
        return int(data[-1])
    return 0


OPERATIONS: Final = (
    "select",
    "uid_fetch_all_flags",
    "fetch_last50",
    "uid_search_unseen",
    "uid_search_subject",
    "uid_search_text",
    "uid_sort_date",
    "uid_thread_references",
    "status",
    "store_all_seen",
    "copy_expunge",
)


def _operations(mailbox: str, last: str) -> dict[str, tuple[Callable[[imaplib.IMAP4], object], bool]]:
    """Name -> (the timed call, whether the mailbox is SELECTed first); in the table's order."""
    return {
        "select": (lambda i: _ok(i.select(mailbox)), False),
        "uid_fetch_all_flags": (lambda i: _ok(i.uid("FETCH", "1:*", "(FLAGS)")), True),
        "fetch_last50": (lambda i: _ok(i.fetch(last, "(UID ENVELOPE FLAGS RFC822.SIZE INTERNALDATE)")), True),
        "uid_search_unseen": (lambda i: _ok(i.uid("SEARCH", "UNSEEN")), True),
        "uid_search_subject": (lambda i: _ok(i.uid("SEARCH", "SUBJECT", SUBJECT_MARKER)), True),
        "uid_search_text": (lambda i: _ok(i.uid("SEARCH", "TEXT", BODY_MARKER)), True),
        "uid_sort_date": (lambda i: _ok(i.uid("SORT", "(REVERSE DATE)", "UTF-8", "ALL")), True),
        "uid_thread_references": (lambda i: _ok(i.uid("THREAD", "REFERENCES", "UTF-8", "ALL")), True),
        "status": (lambda i: _ok(i.status(mailbox, "(MESSAGES UNSEEN UIDNEXT)")), False),
        "store_all_seen": (lambda i: _ok(i.store("1:*", "+FLAGS", "(\\Seen)")), True),
    }


def measure(target: ImapTarget, runs: int = 5, only: frozenset[str] | None = None) -> dict[str, float]:
    """Median ms of each operation of the issue's table (mailbox filled, mostly \\Seen)."""
    return measure_side_by_side({"server": target}, runs, only)["server"]


def measure_side_by_side(
    targets: dict[str, ImapTarget], runs: int = 5, only: frozenset[str] | None = None
) -> dict[str, dict[str, float]]:
    """`measure` on several servers filled alike, one operation at a time on each in turn.

    Each operation runs on every server before the next one starts, so the
    servers see the same machine noise and the same mailbox state (STORE 1:*
    +FLAGS (\\Seen) comes after the searches whose answers it changes)."""
    out: dict[str, dict[str, float]] = {}
    ops: dict[str, dict[str, tuple[Callable[[imaplib.IMAP4], object], bool]]] = {}
    for name, target in targets.items():
        exists = _exists(target)
        out[name] = {"messages": float(exists)}
        out[name].update(_hits(target))  # before the timed STORE leaves nothing unseen
        ops[name] = _operations(target.mailbox, f"{max(1, exists - 49)}:*")
    for op in OPERATIONS[:-1]:
        if only is not None and op not in only:
            continue
        for name, target in targets.items():
            call, select = ops[name][op]
            out[name][f"{op}_ms"] = _timed(target, runs, call, select=select)
    if only is None or "copy_expunge" in only:
        for name, target in targets.items():
            out[name].update(_copy_expunge(target, runs, min(1000, int(out[name]["messages"]))))
    return out


def _hits(target: ImapTarget) -> dict[str, float]:
    """How many messages each timed SEARCH finds: both servers must find the same."""
    imap = target.connect()
    try:
        _ok(imap.select(target.mailbox, readonly=True))
        out: dict[str, float] = {}
        for name, criteria in (
            ("unseen", ("UNSEEN",)),
            ("subject", ("SUBJECT", SUBJECT_MARKER)),
            ("text", ("TEXT", BODY_MARKER)),
        ):
            data = _ok(imap.uid("SEARCH", *criteria))
            first = data[0] if data else b""
            out[f"{name}_hits"] = float(len(first.split())) if isinstance(first, bytes) else 0.0
        return out
    finally:
        imap.logout()


def _copy_expunge(target: ImapTarget, runs: int, count: int) -> dict[str, float]:
    """COPY 1:count into a scratch folder, and EXPUNGE of `count` \\Deleted messages there."""
    if not count:
        return {}
    copies: list[float] = []
    expunges: list[float] = []
    for _ in range(runs):
        imap = target.connect()
        try:
            imap.create(COPY_TARGET)  # NO when it exists: fine
            _ok(imap.select(target.mailbox))
            start = time.perf_counter()
            _ok(imap.copy(f"1:{count}", COPY_TARGET))
            copies.append((time.perf_counter() - start) * 1000)
            _ok(imap.select(COPY_TARGET))
            _ok(imap.store("1:*", "+FLAGS.SILENT", "(\\Deleted)"))
            start = time.perf_counter()
            _ok(imap.expunge())
            expunges.append((time.perf_counter() - start) * 1000)
        finally:
            imap.logout()
    return {
        f"copy_{count}_ms": round(statistics.median(copies), 1),
        f"expunge_{count}_ms": round(statistics.median(expunges), 1),
    }
