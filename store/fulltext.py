"""Full-text search for SEARCH TEXT and BODY: SQLite FTS5 with the trigram tokenizer.

Why SQLite FTS5 (from the standard library): no new dependency or service,
crash-safe transactions, and its trigram tokenizer answers SUBSTRING queries,
which is what IMAP SEARCH means (RFC 3501: "contains the specified string").
A word index (Xapian, tantivy) answers word or prefix queries, so it could not
give the scan's answers without checking every candidate. Rows hold the text
`mailparse.search_text` defines (the evaluator's own), already casefolded,
and the tokenizer runs case-sensitive on it: a phrase of trigrams is then
exactly a substring of that text. Needles under 3 characters cannot be looked
up by trigram and are answered by scanning.

Crash consistency: the index lives in `DATA/fulltext.sqlite`, apart from
LMDB, with a per-mailbox watermark (the highest UID indexed) written in the
same SQLite transaction as the rows. A query takes the index's answer up to
the watermark and scans the messages above it, so a message appended but not
yet indexed (or lost from the index by a crash) is still found. Messages are
immutable and (mailbox_id, uid) is never reused, so rows of expunged messages
are merely stale: answers are intersected with the messages that exist, and
`mailha store fulltext-rebuild` drops them.
"""

from __future__ import annotations

import logging
import pathlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Final

import lmdb

from mailparse import search_text
from mailparse.view import MessageView, ParsedMessage
from store import bodies
from store.compaction import exclusive
from store.environment import open_dbs
from store.schema import MAX_DBS, MSG_KEY, U64, Dbs, MessageRecord

log = logging.getLogger(__name__)
BATCH: Final = 200  # messages per SQLite transaction while catching up
MIN_NEEDLE: Final = 3  # trigram
BACKGROUND_DUTY: Final = 0.5  # the indexer thread works at most half the time
_SCHEMA: Final = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS docs USING fts5("
    "header, body, mime, content='', tokenize='trigram case_sensitive 1')",
    "CREATE TABLE IF NOT EXISTS watermarks (mailbox_id INTEGER PRIMARY KEY, uid INTEGER NOT NULL)",
)


def texts(data: bytes) -> tuple[str, str, str]:
    """(header, body, MIME headers) text of a message, as SEARCH TEXT/BODY see it."""
    parsed = ParsedMessage(
        MessageView(uid=0, modseq=0, flags=(), internal_date=0, tz_offset_minutes=0, size=len(data), chunks=(data,))
    )
    return search_text.header_text(parsed), search_text.body_text(parsed), search_text.mime_header_text(parsed)


def matches(found: tuple[str, str, str], needle: str, body_only: bool) -> bool:
    """The scan's answer (search_eval's TextKey / BodyKey) for one message's texts."""
    header, body, mime = found
    if body_only:
        return needle in body
    return needle in header or needle in body or needle in mime


def _storable(text: str) -> str:
    # sqlite3 takes no lone surrogates; a needle never holds U+FFFD or one (see indexable).
    return text.encode("utf-8", "replace").decode("utf-8") if not text.isascii() else text


def indexable(needle: str) -> bool:
    """Whether the index can answer `needle` (else the messages are scanned)."""
    if len(needle) < MIN_NEEDLE or "\ufffd" in needle:
        return False
    try:
        needle.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def message_bytes(txn: lmdb.Transaction, dbs: Dbs, rec: MessageRecord) -> bytes:
    return b"".join(piece for _, piece in bodies.read_range(txn, dbs, rec.body_id, 0, rec.size))


def messages_above(
    txn: lmdb.Transaction, dbs: Dbs, mid: int, after: int, limit: int
) -> list[tuple[int, MessageRecord]]:
    out: list[tuple[int, MessageRecord]] = []
    prefix = U64.pack(mid)
    cur = txn.cursor(db=dbs.messages)
    if not cur.set_range(MSG_KEY.pack(mid, after + 1)):
        return out
    for key, value in cur:
        if key[:8] != prefix or len(out) >= limit:
            break
        out.append((MSG_KEY.unpack(key)[1], MessageRecord.unpack(value)))
    return out


class FullTextIndex:
    """The FTS5 database of one store: a writer (the indexer thread) and short-lived readers."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._write = self._connect()
        for statement in _SCHEMA:
            self._write.execute(statement)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    # ---- writing ---------------------------------------------------------------
    def watermarks(self) -> dict[int, int]:
        """Mailbox id -> the highest UID indexed (a reader of its own: any thread may ask)."""
        conn = self._connect()
        try:
            return dict(conn.execute("SELECT mailbox_id, uid FROM watermarks").fetchall())
        finally:
            conn.close()

    def add(self, mid: int, items: list[tuple[int, tuple[str, str, str]]], watermark: int) -> None:
        """Rows for `items` and the mailbox's new watermark, in one transaction."""
        rows = [((mid << 32) | uid, _storable(h), _storable(b), _storable(m)) for uid, (h, b, m) in items]
        with self._write:
            self._write.execute("BEGIN")
            self._write.executemany("INSERT INTO docs(rowid, header, body, mime) VALUES (?, ?, ?, ?)", rows)
            self._write.execute(
                "INSERT INTO watermarks(mailbox_id, uid) VALUES (?, ?) "
                "ON CONFLICT(mailbox_id) DO UPDATE SET uid = excluded.uid",
                (mid, watermark),
            )

    def catch_up(self, env: lmdb.Environment, dbs: Dbs, *, duty: float = 1.0) -> int:
        """Index every message above its mailbox's watermark; return how many were indexed.

        With `duty` < 1 it rests after each batch so that it works at most that share of
        the time: indexing costs ~1-2 ms of CPU per message, taken from the same process
        (and GIL) as the committer, so the background thread must not starve deliveries."""
        marks = self.watermarks()
        done = 0
        with env.begin() as txn:
            mids = [U64.unpack(bytes(k))[0] for k in txn.cursor(db=dbs.mailboxes).iternext(values=False)]
        for mid in mids:
            while not self._stop.is_set():
                started = time.monotonic()
                with env.begin() as txn:  # short read transactions: a long one would pin freed pages
                    batch = messages_above(txn, dbs, mid, marks.get(mid, 0), BATCH)
                    items = [(uid, texts(message_bytes(txn, dbs, rec))) for uid, rec in batch]
                if not items:
                    break
                marks[mid] = items[-1][0]
                self.add(mid, items, marks[mid])
                done += len(items)
                if duty < 1.0:
                    self._stop.wait((time.monotonic() - started) * (1 - duty) / duty)
        return done

    # ---- the indexer thread ------------------------------------------------------
    def start(self, env: lmdb.Environment, dbs: Dbs) -> None:
        def run() -> None:
            while not self._stop.is_set():
                self._wake.wait(1.0)
                self._wake.clear()
                try:
                    self.catch_up(env, dbs, duty=BACKGROUND_DUTY)
                except (lmdb.Error, sqlite3.Error):
                    log.exception("full-text indexing failed; queries scan what is not indexed")
                    self._stop.wait(5.0)

        self._thread = threading.Thread(target=run, name="fulltext-indexer", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
        self._write.close()

    # ---- queries -----------------------------------------------------------------
    def search(self, mid: int, needle: str, body_only: bool) -> tuple[set[int], int]:
        """(UIDs up to the watermark whose text holds `needle`, the watermark); `needle` indexable."""
        conn = self._connect()
        try:
            row = conn.execute("SELECT uid FROM watermarks WHERE mailbox_id = ?", (mid,)).fetchone()
            mark = int(row[0]) if row else 0
            if not mark:
                return set(), 0
            phrase = '"' + needle.replace('"', '""') + '"'
            query = ("body : " if body_only else "{header body mime} : ") + phrase
            rows = conn.execute(
                "SELECT rowid FROM docs WHERE docs MATCH ? AND rowid BETWEEN ? AND ?",
                (query, mid << 32, (mid << 32) | mark),
            ).fetchall()
            return {int(r[0]) & 0xFFFFFFFF for r in rows}, mark
        finally:
            conn.close()


def scan_matches(
    txn: lmdb.Transaction,
    dbs: Dbs,
    mid: int,
    ranges: list[tuple[int, int]],
    needle: str,
    *,
    body_only: bool,
    above: int,
) -> Iterator[int]:
    """UIDs in `ranges` above `above` whose text holds `needle`, by reading each message."""
    for lo, hi in ranges:
        start = max(lo, above + 1)
        if start > hi:
            continue
        prefix = U64.pack(mid)
        cur = txn.cursor(db=dbs.messages)
        if not cur.set_range(MSG_KEY.pack(mid, start)):
            continue
        for key, value in cur:
            if key[:8] != prefix:
                break
            uid = MSG_KEY.unpack(key)[1]
            if uid > hi:
                break
            rec = MessageRecord.unpack(value)
            if matches(texts(message_bytes(txn, dbs, rec)), needle, body_only):
                yield uid


def rebuild(data_dir: pathlib.Path) -> int:
    """Offline: drop the full-text index of a store directory and index every message again."""
    with exclusive(data_dir):
        for suffix in ("", "-wal", "-shm"):
            (data_dir / f"fulltext.sqlite{suffix}").unlink(missing_ok=True)
        env = lmdb.open(str(data_dir / "lmdb"), max_dbs=MAX_DBS, subdir=True)
        try:
            dbs = open_dbs(env)
            index = FullTextIndex(data_dir / "fulltext.sqlite")
            try:
                return index.catch_up(env, dbs)
            finally:
                index.close()
        finally:
            env.close()
