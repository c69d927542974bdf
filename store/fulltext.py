"""Full-text search for SEARCH TEXT and BODY: SQLite FTS5 word index, substring answers.

IMAP SEARCH means "contains the string" (RFC 3501), a substring, not a word.
The index is SQLite FTS5 (the standard library: no new dependency or service,
crash-safe transactions) with the `ascii` word tokenizer and `detail=none`
(rowids only): about 4% of the raw mail, where the trigram tokenizer, which
answers substrings directly, took 2.3x (1.9x with detail=none), measured on
the benchmark corpus (store/README.md). Substrings are answered through the
vocabulary, a table of the distinct words kept beside each FTS table: every
piece of the needle between separators (3 characters or more) lies inside
one word of a matching text, so the candidates are the messages holding, for
every piece, some vocabulary word that contains it. A needle that is one
such piece is answered exactly by that; any other needle is checked on the
candidates' text (the scan's own comparison); a needle without a piece is
scanned. Xapian and tantivy are word indexes too and would need the same
vocabulary step for substrings; FTS5 does it without a new package.

Rows hold the text `mailparse.search_text` defines (the evaluator's own),
already casefolded: the body in `body_words`, the header and MIME-header text
(joined by a newline, which no word crosses) in `head_words`.

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
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Final

import lmdb

from mailparse import search_text
from mailparse.view import MessageView, ParsedMessage
from store import bodies
from store.compaction import exclusive
from store.environment import open_dbs
from store.layout import lmdb_dir
from store.schema import MAX_DBS, MSG_KEY, U64, Dbs, MessageRecord

log = logging.getLogger(__name__)
BATCH: Final = 200  # messages per SQLite transaction while catching up
MIN_RUN: Final = 3  # the shortest word piece looked up in the vocabulary
BACKGROUND_DUTY: Final = 0.5  # the indexer works at most half the time
# After a wake the indexer waits for the appends to pause (no wake for INDEX_QUIET seconds),
# at most INDEX_DELAY, then indexes what came in one go. Woken per commit, it took a core from
# the reply of the very append that woke it, and paid a SQLite transaction (and a connection
# for the watermarks) per message: measured with one imaplib session on tmpfs, APPEND 200 B
# p50 2.05-2.29 ms with per-commit indexing, 1.39-1.44 ms without, store CPU per append
# 1.2 -> 0.6 ms. What is not indexed yet is scanned by SEARCH (`search`).
INDEX_QUIET: Final = 0.05
INDEX_DELAY: Final = 0.5
IDLE_POLL: Final = 1.0  # seconds between looks when nobody wakes it
TERMS_PER_QUERY: Final = 200  # vocabulary words OR-ed in one MATCH
MAX_TERMS: Final = 20_000  # a run inside more words than this is scanned instead
MAX_PIECES: Final = 4  # pieces of one needle looked up (the longest; candidates are checked anyway)
SCHEMA_VERSION: Final = 3  # 1: one trigram table `docs`; any other layout is dropped and rebuilt on open
# A word as FTS5's `ascii` tokenizer cuts the (casefolded) text: ASCII letters and
# digits, and every non-ASCII character; any other ASCII character separates words.
_WORD: Final = re.compile("[a-z0-9\x80-\U0010ffff]+")
_RUN: Final = re.compile("[a-z0-9\x80-\U0010ffff]{" + str(MIN_RUN) + ",}")
_SEPARATOR: Final = re.compile("[^a-z0-9\x80-\U0010ffff]")
# ASCII text: every byte that is not a word byte becomes a space, then bytes.split (see _words).
_ASCII_SEPARATORS: Final = bytes(
    c if chr(c) in "abcdefghijklmnopqrstuvwxyz0123456789" else 32 for c in range(128)
) + bytes(range(128, 256))
WORDS_SLICE: Final = 64 * 1024  # characters of text cut into words per step (see _words)
_TABLES: Final = ("head_words", "body_words")
_SCHEMA: Final = (
    *(
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {t} USING fts5(text, content='', detail=none, tokenize='ascii')"
        for t in _TABLES
    ),
    # The vocabulary, kept beside each table (fts5vocab would read every posting list to list it).
    *(f"CREATE TABLE IF NOT EXISTS {t}_terms (term TEXT PRIMARY KEY) WITHOUT ROWID" for t in _TABLES),
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


def _words(text: str) -> set[str]:
    """The distinct words of `text` (as _WORD cuts it), a slice at a time.

    One `_WORD.findall` over a whole body held the GIL for all of it (the re module never
    lets go): ~30 ms for the 1 MiB benchmark message, most of a second for a 20 MiB one,
    during which no append or reply of the store could run. Slices end at a separator, so
    no word is cut; ASCII slices are cut by bytes.translate + split (~2.5x faster)."""
    words: set[str] = set()
    at, size = 0, len(text)
    while at < size:
        cut = _SEPARATOR.search(text, min(size, at + WORDS_SLICE)) if at + WORDS_SLICE < size else None
        end = cut.start() if cut is not None else size
        piece = text[at:end]
        if piece.isascii():
            words.update(w.decode() for w in set(piece.encode().translate(_ASCII_SEPARATORS).split()))
        else:
            words.update(_WORD.findall(piece))
        at = end + 1
    return words


def _storable(text: str) -> str:
    # sqlite3 takes no lone surrogates; a needle never holds U+FFFD or one (see indexable).
    return text.encode("utf-8", "replace").decode("utf-8") if not text.isascii() else text


def runs(needle: str) -> list[str]:
    """The needle's word pieces the vocabulary is asked about: the longest MAX_PIECES
    (each costs a pass over the vocabulary; a client's needle may hold thousands)."""
    return sorted(set(_RUN.findall(needle)), key=len, reverse=True)[:MAX_PIECES]


def indexable(needle: str) -> bool:
    """Whether the index can narrow `needle` down (else the messages are scanned)."""
    if "\ufffd" in needle or not _RUN.search(needle):
        return False
    try:
        needle.encode("utf-8")  # a lone surrogate: stored texts hold '?' there (_storable)
    except UnicodeEncodeError:
        return False
    return True


def exact(needle: str) -> bool:
    """Whether the index's candidates are the answer (no check on the text).

    A needle without separators lies inside one word of the text, and the words
    are cut and stored verbatim (the text is casefolded before, the `ascii`
    tokenizer folds nothing else), so a word containing it is exactly a text
    containing it."""
    return _RUN.fullmatch(needle) is not None


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


OPTIMIZE_AFTER: Final = 5000  # messages indexed since the last optimize, at least


class Wakes:
    """What the indexer was told: the mailboxes that received messages, or "every mailbox"
    (a sweep: at start, for what a crash left unindexed, after an error, or when a wake-up
    was lost). Thread-safe; `event` is set by each call."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._lock = threading.Lock()
        self._dirty: set[int] = set()
        self._sweep = False

    def add(self, mailbox_ids: Iterable[int]) -> None:
        with self._lock:
            self._dirty.update(mailbox_ids)
        self.event.set()

    def sweep(self) -> None:
        with self._lock:
            self._sweep = True
        self.event.set()

    def take(self) -> set[int] | None:
        """The mailboxes to visit now (None: every mailbox), forgetting them."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            if self._sweep:
                self._sweep = False
                return None
            return dirty


def _settle(event: threading.Event, stop: threading.Event) -> None:
    """Wait until no wake came for INDEX_QUIET, or INDEX_DELAY passed (see INDEX_QUIET)."""
    deadline = time.monotonic() + INDEX_DELAY
    while event.is_set() and not stop.is_set():
        event.clear()
        left = deadline - time.monotonic()
        if left <= 0:
            return
        stop.wait(min(INDEX_QUIET, left))


class FullTextIndex:
    """The FTS5 database of one store: a writer (the indexer process) and short-lived readers."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._write = self._connect()
        (version,) = self._write.execute("PRAGMA user_version").fetchone()
        if version != SCHEMA_VERSION:  # an index of another layout: start again from nothing
            self._write.execute("DROP TABLE IF EXISTS docs")
            self._write.execute("DROP TABLE IF EXISTS watermarks")
        for statement in _SCHEMA:
            self._write.execute(statement)
        self._write.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA journal_size_limit=1048576")  # the WAL shrinks back after checkpoints
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
        self._add_rows([(mid, uid, found) for uid, found in items], {mid: watermark})

    def _add_rows(self, rows: list[tuple[int, int, tuple[str, str, str]]], marks: dict[int, int]) -> None:
        """Rows of (mailbox, uid, texts), maybe of several mailboxes, and their new watermarks:
        one transaction (a commit per mailbox cost more than indexing a small message)."""
        heads = [((mid << 32) | uid, _storable(h + "\n" + m)) for mid, uid, (h, _, m) in rows]
        bodies_ = [((mid << 32) | uid, _storable(b)) for mid, uid, (_, b, _) in rows]
        with self._write:
            self._write.execute("BEGIN")
            self._write.executemany("INSERT INTO head_words(rowid, text) VALUES (?, ?)", heads)
            self._write.executemany("INSERT INTO body_words(rowid, text) VALUES (?, ?)", bodies_)
            for table, texts_ in (("head_words", heads), ("body_words", bodies_)):
                words = set().union(*(_words(text) for _, text in texts_))
                self._write.executemany(f"INSERT OR IGNORE INTO {table}_terms(term) VALUES (?)", ((w,) for w in words))
            self._write.executemany(
                "INSERT INTO watermarks(mailbox_id, uid) VALUES (?, ?) "
                "ON CONFLICT(mailbox_id) DO UPDATE SET uid = excluded.uid",
                sorted(marks.items()),
            )

    def _marks_of(self, mids: list[int]) -> dict[int, int]:
        """The watermarks of `mids` (the writer's own connection: only the indexer asks)."""
        marks: dict[int, int] = {}
        for at in range(0, len(mids), 500):
            part = mids[at : at + 500]
            query = f"SELECT mailbox_id, uid FROM watermarks WHERE mailbox_id IN ({','.join('?' * len(part))})"
            marks.update(self._write.execute(query, part).fetchall())
        return marks

    def catch_up(
        self,
        env: lmdb.Environment,
        dbs: Dbs,
        *,
        duty: float = 1.0,
        mailbox_ids: Iterable[int] | None = None,
        stop: threading.Event | None = None,
    ) -> int:
        """Index every message above its mailbox's watermark, in the mailboxes `mailbox_ids`
        (None: every mailbox); return how many were indexed.

        With `duty` < 1 it rests after each batch so that it works at most that share of
        the time: indexing costs ~0.2 ms of CPU per message, on the same two cores as the
        deliveries; `stop` ends it between batches. The indexer passes the mailboxes that
        received messages since its last pass: visiting every mailbox of the store after
        each append cost more than the indexing."""
        stop = stop or threading.Event()
        if mailbox_ids is None:
            with env.begin() as txn:
                pending = [U64.unpack(bytes(k))[0] for k in txn.cursor(db=dbs.mailboxes).iternext(values=False)]
        else:
            pending = sorted(set(mailbox_ids))
        marks = self._marks_of(pending)
        done = 0
        while pending and not stop.is_set():
            started = time.monotonic()
            rows: list[tuple[int, int, tuple[str, str, str]]] = []
            moved: dict[int, int] = {}
            with env.begin() as txn:  # short read transactions: a long one would pin freed pages
                while pending and len(rows) < BATCH:
                    mid, room = pending[0], BATCH - len(rows)
                    batch = messages_above(txn, dbs, mid, marks.get(mid, 0), room)
                    rows.extend((mid, uid, texts(message_bytes(txn, dbs, rec))) for uid, rec in batch)
                    if batch:
                        marks[mid] = moved[mid] = batch[-1][0]
                    if len(batch) < room:
                        pending.pop(0)  # no more above the new mark
            if rows:
                self._add_rows(rows, moved)
                done += len(rows)
                if duty < 1.0:
                    stop.wait((time.monotonic() - started) * (1 - duty) / duty)
        return done

    def optimize(self) -> None:
        """Merge each FTS table's segments into one and give the freed pages back to the file
        system (VACUUM, then the WAL truncated): after a large fill the many small batches
        leave segments and free pages behind (issue 17's disk bound)."""
        for table in ("head_words", "body_words"):
            self._write.execute(f"INSERT INTO {table}({table}) VALUES('optimize')")
        self._write.execute("VACUUM")
        self._write.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ---- the indexer loop (in its own process: store/fulltext_worker.py) ---------------
    def run(self, env: lmdb.Environment, dbs: Dbs, wakes: Wakes, stop: threading.Event) -> None:
        """Index what `wakes` names (or every mailbox after a sweep request) once the appends
        pause, until `stop`; optimize once idle after a large fill."""
        since_optimize = 0
        while not stop.is_set():
            wakes.event.wait(IDLE_POLL)
            _settle(wakes.event, stop)
            try:
                indexed = self.catch_up(env, dbs, duty=BACKGROUND_DUTY, mailbox_ids=wakes.take(), stop=stop)
                since_optimize += indexed
                # Once idle after a large fill: at least OPTIMIZE_AFTER messages and a tenth
                # of the index, so the rewrite's cost stays a share of the indexing's.
                if not indexed and since_optimize >= max(OPTIMIZE_AFTER, sum(self.watermarks().values()) // 10):
                    self.optimize()
                    since_optimize = 0
            except lmdb.MapResizedError:
                env.set_mapsize(0)  # the store grew the map; no transaction of ours is open
                wakes.sweep()
            except (lmdb.Error, sqlite3.Error):
                log.exception("full-text indexing failed; queries scan what is not indexed")
                wakes.sweep()
                stop.wait(5.0)

    def close(self) -> None:
        self._write.close()

    # ---- queries -----------------------------------------------------------------
    def search(self, mid: int, needle: str, body_only: bool) -> tuple[set[int] | None, int]:
        """(UIDs up to the watermark that may hold `needle`, the watermark); `needle` indexable.

        The UIDs are the answer when `exact(needle)`, else candidates to check.
        None instead of UIDs: a run is inside too many words to be worth it (scan)."""
        conn = self._connect()
        try:
            row = conn.execute("SELECT uid FROM watermarks WHERE mailbox_id = ?", (mid,)).fetchone()
            mark = int(row[0]) if row else 0
            if not mark:
                return set(), 0
            found: set[int] | None = None
            for run in runs(needle):
                holding: set[int] = set()
                for table in _TABLES[1:] if body_only else _TABLES:
                    words = _words_containing(conn, table, run)
                    if words is None:
                        return None, mark
                    holding |= _rows_with_any(conn, table, words, mid, mark)
                found = holding if found is None else found & holding
                if not found:
                    break
            return found or set(), mark
        finally:
            conn.close()


def _words_containing(conn: sqlite3.Connection, table: str, run: str) -> list[str] | None:
    words = [
        str(w)
        for (w,) in conn.execute(
            f"SELECT term FROM {table}_terms WHERE instr(term, ?) > 0 LIMIT ?", (run, MAX_TERMS + 1)
        )
    ]
    return None if len(words) > MAX_TERMS else words


def _rows_with_any(conn: sqlite3.Connection, table: str, words: list[str], mid: int, mark: int) -> set[int]:
    out: set[int] = set()
    for at in range(0, len(words), TERMS_PER_QUERY):
        query = " OR ".join('"' + w.replace('"', '""') + '"' for w in words[at : at + TERMS_PER_QUERY])
        rows = conn.execute(
            f"SELECT rowid FROM {table} WHERE {table} MATCH ? AND rowid BETWEEN ? AND ?",
            (query, mid << 32, (mid << 32) | mark),
        )
        out.update(int(r[0]) & 0xFFFFFFFF for r in rows)
    return out


def check(
    txn: lmdb.Transaction, dbs: Dbs, mid: int, uids: Iterable[int], needle: str, *, body_only: bool
) -> Iterator[int]:
    """The UIDs among `uids` (candidates) whose message exists and whose text holds `needle`."""
    for uid in uids:
        value = txn.get(MSG_KEY.pack(mid, uid), db=dbs.messages)
        if value is not None and matches(
            texts(message_bytes(txn, dbs, MessageRecord.unpack(value))), needle, body_only
        ):
            yield uid


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
        env = lmdb.open(str(lmdb_dir(data_dir)), max_dbs=MAX_DBS, subdir=True)
        try:
            dbs = open_dbs(env)
            index = FullTextIndex(data_dir / "fulltext.sqlite")
            try:
                return index.catch_up(env, dbs)
            finally:
                index.close()
        finally:
            env.close()
