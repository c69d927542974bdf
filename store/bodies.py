"""Message bodies inside LMDB: chunked, with a header block, reference-counted.

Why inside LMDB: one durability domain on the shared volume, no orphan blob
files to collect, and a body is atomic with the index entries that refer to
it. COPY only raises the reference count.
"""

from __future__ import annotations

import errno
import os
import pathlib
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

import lmdb

from store import body_codec, message_facts
from store.counters import next_value
from store.errors import StorageFull
from store.ordered_put import put_in_order
from store.schema import BODY_META, CHUNK_KEY, CHUNK_SIZE, U32, U64, Dbs, message_body_id

HEADER_SEARCH_LIMIT = 1024 * 1024
# In the refcount field of body_meta: the chunks are zstd-compressed (body_codec). A refcount
# never comes near 2^30; bodies written before compression existed have the bit clear.
COMPRESSED = 1 << 31
# Also there: each compressed chunk n is stored as pieces under chunk_no (n << PIECE_BITS) | k.
# Why: LMDB keeps a value of up to ~2 KB in a leaf page and gives a larger one whole 4 KiB
# overflow pages; a 6 KB message compresses to ~2.6 KB, which took two pages' worth of disk
# for one page of data. Pieces of at most PIECE_MAX bytes, appended in key order (bodies get
# increasing ids), fill leaf pages instead: 0.52x the raw corpus against 0.68x (store/README.md).
# Bodies written before have the bit clear and one value per chunk.
SPLIT = 1 << 30
FLAG_BITS = COMPRESSED | SPLIT
PIECE_BITS = 12
PIECE_MAX = 1000
SPLIT_UP_TO = 32 * 1024  # a larger compressed chunk wastes little of its overflow pages: kept whole
SPOOL_THRESHOLD = 1024 * 1024  # bodies above this are spooled to disk while they arrive


def header_block(prefix: bytes) -> bytes:
    """The RFC 5322 header block including the blank line (all of `prefix` when it has none)."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = prefix.find(sep)
        if at >= 0:
            if sep == b"\n\n" and prefix.find(b"\r\n\r\n") >= 0:
                continue
            return prefix[: at + len(sep)]
    return prefix


@dataclass
class BodySource:
    """An incoming message: in memory when small, else a spool file."""

    size: int
    data: bytes | None = None
    path: pathlib.Path | None = None
    head: bytes = b""  # the first HEADER_SEARCH_LIMIT bytes
    # zstd-compressed CHUNK_SIZE pieces (body_codec), when the caller compressed and it paid
    packed: list[bytes] | None = None

    def chunks(self) -> Iterator[bytes]:
        if self.data is not None:
            view = memoryview(self.data)
            for at in range(0, len(view), CHUNK_SIZE):
                yield bytes(view[at : at + CHUNK_SIZE])
            return
        assert self.path is not None
        with open(self.path, "rb") as f:
            while piece := f.read(CHUNK_SIZE):
                yield piece

    def discard(self) -> None:
        if self.path is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass


class BodyWriter:
    """Collects a streamed body, spooling to `spool_dir` once it passes SPOOL_THRESHOLD."""

    def __init__(self, spool_dir: pathlib.Path) -> None:
        self._spool_dir = spool_dir
        self._parts: list[bytes] = []
        self._size = 0
        self._file: tempfile._TemporaryFileWrapper[bytes] | None = None
        self._head = bytearray()

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes) -> None:
        try:
            self._write(data)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self.abandon()
                raise StorageFull(f"spool: {exc.strerror}") from None
            raise

    def _write(self, data: bytes) -> None:
        if not data:
            return
        if len(self._head) < HEADER_SEARCH_LIMIT:
            self._head += data[: HEADER_SEARCH_LIMIT - len(self._head)]
        self._size += len(data)
        if self._file is None and self._size > SPOOL_THRESHOLD:
            # Closed in finish() or abandon(); it outlives this call by design.
            self._file = tempfile.NamedTemporaryFile(dir=self._spool_dir, prefix="append-", delete=False)  # noqa: SIM115
            for part in self._parts:
                self._file.write(part)
            self._parts = []
        if self._file is not None:
            self._file.write(data)
        else:
            self._parts.append(data)

    def finish(self) -> BodySource:
        if self._file is None:
            data = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
            self._parts = []
            return BodySource(self._size, data=data, head=bytes(self._head))
        self._file.close()
        return BodySource(self._size, path=pathlib.Path(self._file.name), head=bytes(self._head))

    def abandon(self) -> None:
        if self._file is not None:
            spool, self._file = self._file, None
            try:
                spool.close()
            except OSError:
                pass  # closing flushes; on a full disk that fails too
            try:
                os.unlink(spool.name)
            except FileNotFoundError:
                pass


def reference_count(refs_field: int) -> int:
    """The reference count in body_meta's refcount field (without its flag bits)."""
    return refs_field & ~FLAG_BITS


def _pieces(packed: bytes) -> list[bytes]:
    """A compressed chunk in even pieces of at most PIECE_MAX bytes (whole past SPLIT_UP_TO)."""
    if len(packed) <= PIECE_MAX or len(packed) > SPLIT_UP_TO:
        return [packed]
    count = -(-len(packed) // PIECE_MAX)
    size = -(-len(packed) // count)
    return [packed[at : at + size] for at in range(0, len(packed), size)]


def store_body(
    txn: lmdb.Transaction, dbs: Dbs, source: BodySource, body_id: int | None = None, *, header: bytes | None = None
) -> int:
    """Write `source` as a new body (id `body_id`, or the next from the counter); return the id.
    `header`: its `header_block`, when the caller made it already."""
    if body_id is None:
        body_id = next_value(txn, dbs, b"next_body_id", 1)
    if source.packed is not None:
        if len(source.packed) >= 1 << (32 - PIECE_BITS):
            raise ValueError(f"body of {len(source.packed)} chunks: too many to store in pieces")
        for n, chunk in enumerate(source.packed):
            for k, piece in enumerate(_pieces(chunk)):
                put_in_order(txn, CHUNK_KEY.pack(body_id, (n << PIECE_BITS) | k), piece, dbs.body_chunks)
        refs = 1 | COMPRESSED | SPLIT
    else:
        for n, piece in enumerate(source.chunks()):
            put_in_order(txn, CHUNK_KEY.pack(body_id, n), piece, dbs.body_chunks)
        refs = 1
    if header is None:
        header = header_block(source.head if source.data is None else source.data[:HEADER_SEARCH_LIMIT])
    put_in_order(txn, U64.pack(body_id), BODY_META.pack(refs, source.size) + header, dbs.body_meta)
    return body_id


# A body's references are body_meta's count plus its entry in `body_refs` (absent: none).
# COPY counts there, and EXPUNGE of a copy takes from there first: a 12-byte entry instead of
# rewriting body_meta's value with its header block (~450 B; COPY or EXPUNGE of 1,000 rewrote
# and fsynced ~125 pages of body_meta). body_meta's count is 1 for every body written since;
# bodies copied before still carry higher counts there, which decref uses once the extras are
# gone, so environments of before need no migration.


def incref(txn: lmdb.Transaction, dbs: Dbs, body_id: int) -> None:
    key = U64.pack(body_id)
    raw = txn.get(key, db=dbs.body_refs)
    if raw is None:
        assert txn.get(key, db=dbs.body_meta) is not None, f"body {body_id} missing"
        extra = 0
    else:
        extra = U32.unpack(raw)[0]
    txn.put(key, U32.pack(extra + 1), db=dbs.body_refs)


def extra_references(txn: lmdb.Transaction, body_refs: lmdb._Database, body_id: int) -> int:
    """The references of a body counted in `body_refs` (to add to body_meta's count)."""
    raw = txn.get(U64.pack(body_id), db=body_refs)
    return 0 if raw is None else int(U32.unpack(raw)[0])


def decref(txn: lmdb.Transaction, dbs: Dbs, body_id: int) -> None:
    key = U64.pack(body_id)
    extra = txn.get(key, db=dbs.body_refs)
    if extra is not None:
        left = U32.unpack(extra)[0] - 1
        if left > 0:
            txn.put(key, U32.pack(left), db=dbs.body_refs)
        else:
            txn.delete(key, db=dbs.body_refs)
        return
    raw = txn.get(key, db=dbs.body_meta)
    if raw is None:
        return
    refs, size = BODY_META.unpack_from(raw)
    if reference_count(refs) > 1:
        txn.put(key, BODY_META.pack(refs - 1, size) + bytes(raw[BODY_META.size :]), db=dbs.body_meta)
        return
    txn.delete(key, db=dbs.body_meta)
    message_facts.forget(txn, dbs, body_id)
    cur = txn.cursor(db=dbs.body_chunks)
    if cur.set_range(CHUNK_KEY.pack(body_id, 0)):
        while bytes(cur.key()[:8]) == key and cur.delete():
            pass


_ONE_EXTRA: Final = U32.pack(1)


def decref_all(txn: lmdb.Transaction, dbs: Dbs, body_ids: Iterable[int]) -> None:
    """`decref` of each body id (one may come more than once), walking `body_refs` in key
    order (store/ordered_delete.py): EXPUNGE of 1,000 copies made a function call, a get
    and a put or delete per message; most of them are now an entry dropped by a cursor."""
    counts = Counter(map(U64.pack, body_ids))
    cur = txn.cursor(db=dbs.body_refs)
    at, value, delete, seek = cur.key, cur.value, cur.delete, cur.set_key
    for key, times in sorted(counts.items()):
        if at() == key or seek(key):
            extra = value()
            if extra == _ONE_EXTRA and times == 1:  # the usual case: one copy of it expunged
                delete()
                continue
            left = U32.unpack(extra)[0] - times
            if left > 0:
                cur.put(key, U32.pack(left))
                continue
            delete()
            times = -left  # the rest from body_meta's count
        for _ in range(times):
            decref(txn, dbs, int(U64.unpack(key)[0]))


def read_header(txn: lmdb.Transaction, dbs: Dbs, body_id: int) -> bytes:
    raw = txn.get(U64.pack(body_id), db=dbs.body_meta)
    return b"" if raw is None else bytes(raw[BODY_META.size :])


def _flags(txn: lmdb.Transaction, body_meta: lmdb._Database, body_id: int) -> int:
    raw = txn.get(U64.pack(body_id), db=body_meta)
    return 0 if raw is None else int(BODY_META.unpack_from(raw)[0]) & FLAG_BITS


def is_compressed(txn: lmdb.Transaction, dbs: Dbs, body_id: int) -> bool:
    return bool(_flags(txn, dbs.body_meta, body_id) & COMPRESSED)


def _split_chunk(cur: lmdb.Cursor, body_id: int, n: int) -> bytes | None:
    """Chunk n of a SPLIT body: its pieces joined (None if it has none)."""
    if not cur.set_range(CHUNK_KEY.pack(body_id, n << PIECE_BITS)):
        return None
    end = CHUNK_KEY.pack(body_id, (n + 1) << PIECE_BITS)
    parts: list[bytes] = []
    for key, value in cur:
        if bytes(key) >= end:
            break
        parts.append(bytes(value))
    return b"".join(parts) if parts else None


def _stored_chunk(txn: lmdb.Transaction, body_chunks: lmdb._Database, flags: int, body_id: int, n: int) -> bytes | None:
    """Chunk n of a body as appended (decompressed), None past its end."""
    if flags & SPLIT:
        chunk: bytes | memoryview | None = _split_chunk(txn.cursor(db=body_chunks), body_id, n)
    else:
        chunk = txn.get(CHUNK_KEY.pack(body_id, n), db=body_chunks)
    if chunk is None:
        return None
    return body_codec.decompress_chunk(chunk) if flags & COMPRESSED else bytes(chunk)


def read_all(txn: lmdb.Transaction, body_meta: lmdb._Database, body_chunks: lmdb._Database, body_id: int) -> bytes:
    """A body's bytes as they were appended (for readers with the databases' handles only:
    backup). zstandard.ZstdError when a compressed chunk does not decompress."""
    flags = _flags(txn, body_meta, body_id)
    parts: list[bytes] = []
    while (chunk := _stored_chunk(txn, body_chunks, flags, body_id, len(parts))) is not None:
        parts.append(chunk)
        if len(chunk) < CHUNK_SIZE:
            break
    return b"".join(parts)


def read_range(txn: lmdb.Transaction, dbs: Dbs, body_id: int, offset: int, length: int) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) pieces of at most CHUNK_SIZE covering [offset, offset+length)."""
    end = offset + length
    n = offset // CHUNK_SIZE
    flags = _flags(txn, dbs.body_meta, body_id) if length > 0 else 0
    while offset < end:
        chunk = _stored_chunk(txn, dbs.body_chunks, flags, body_id, n)
        if chunk is None:
            return
        start = offset - n * CHUNK_SIZE
        piece = chunk[start : min(len(chunk), end - n * CHUNK_SIZE)]
        if not piece:
            return
        yield offset, piece
        offset += len(piece)
        n += 1


def reference_disagreements(txn: lmdb.Transaction, dbs: Dbs) -> list[str]:
    """Bodies whose references (body_meta's count plus body_refs) differ from the message
    records that use them, and records whose body is missing: empty when they agree."""
    used: dict[int, int] = {}
    for value in txn.cursor(db=dbs.messages).iternext(keys=False, values=True):
        body_id = message_body_id(value)
        used[body_id] = used.get(body_id, 0) + 1
    problems: list[str] = []
    for key, value in txn.cursor(db=dbs.body_meta):
        body_id = int(U64.unpack(bytes(key))[0])
        count = reference_count(BODY_META.unpack_from(value)[0]) + extra_references(txn, dbs.body_refs, body_id)
        users = used.pop(body_id, 0)
        if count != users:
            problems.append(f"body {body_id}: {count} references counted, used by {users} messages")
    for key in txn.cursor(db=dbs.body_refs).iternext(keys=True, values=False):
        body_id = int(U64.unpack(bytes(key))[0])
        if txn.get(bytes(key), db=dbs.body_meta) is None:
            problems.append(f"body {body_id}: extra references of a body that is gone")
    problems.extend(f"body {b}: used by {n} messages but missing" for b, n in sorted(used.items()))
    return problems
