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
from collections.abc import Iterator
from dataclasses import dataclass

import lmdb

from store import body_codec, message_facts
from store.counters import next_value
from store.errors import StorageFull
from store.schema import BODY_META, CHUNK_KEY, CHUNK_SIZE, U64, Dbs

HEADER_SEARCH_LIMIT = 1024 * 1024
# In the refcount field of body_meta: the chunks are zstd-compressed (body_codec). A refcount
# never comes near 2^31; bodies written before compression existed have the bit clear.
COMPRESSED = 1 << 31
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


def store_body(txn: lmdb.Transaction, dbs: Dbs, source: BodySource, body_id: int | None = None) -> int:
    """Write `source` as a new body (id `body_id`, or the next from the counter); return the id."""
    if body_id is None:
        body_id = next_value(txn, dbs, b"next_body_id", 1)
    pieces = source.packed if source.packed is not None else source.chunks()
    for n, piece in enumerate(pieces):
        txn.put(CHUNK_KEY.pack(body_id, n), piece, db=dbs.body_chunks)
    head = source.head if source.data is None else source.data[:HEADER_SEARCH_LIMIT]
    refs = 1 | (COMPRESSED if source.packed is not None else 0)
    txn.put(U64.pack(body_id), BODY_META.pack(refs, source.size) + header_block(head), db=dbs.body_meta)
    return body_id


def incref(txn: lmdb.Transaction, dbs: Dbs, body_id: int) -> None:
    key = U64.pack(body_id)
    raw = txn.get(key, db=dbs.body_meta)
    assert raw is not None, f"body {body_id} missing"
    refs, size = BODY_META.unpack_from(raw)
    txn.put(key, BODY_META.pack(refs + 1, size) + bytes(raw[BODY_META.size :]), db=dbs.body_meta)


def decref(txn: lmdb.Transaction, dbs: Dbs, body_id: int) -> None:
    key = U64.pack(body_id)
    raw = txn.get(key, db=dbs.body_meta)
    if raw is None:
        return
    refs, size = BODY_META.unpack_from(raw)
    if refs & ~COMPRESSED > 1:
        txn.put(key, BODY_META.pack(refs - 1, size) + bytes(raw[BODY_META.size :]), db=dbs.body_meta)
        return
    txn.delete(key, db=dbs.body_meta)
    message_facts.forget(txn, dbs, body_id)
    for n in range((size + CHUNK_SIZE - 1) // CHUNK_SIZE):
        txn.delete(CHUNK_KEY.pack(body_id, n), db=dbs.body_chunks)


def read_header(txn: lmdb.Transaction, dbs: Dbs, body_id: int) -> bytes:
    raw = txn.get(U64.pack(body_id), db=dbs.body_meta)
    return b"" if raw is None else bytes(raw[BODY_META.size :])


def is_compressed(txn: lmdb.Transaction, dbs: Dbs, body_id: int) -> bool:
    raw = txn.get(U64.pack(body_id), db=dbs.body_meta)
    return raw is not None and bool(BODY_META.unpack_from(raw)[0] & COMPRESSED)


def read_range(txn: lmdb.Transaction, dbs: Dbs, body_id: int, offset: int, length: int) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) pieces of at most CHUNK_SIZE covering [offset, offset+length)."""
    end = offset + length
    n = offset // CHUNK_SIZE
    compressed = length > 0 and is_compressed(txn, dbs, body_id)
    while offset < end:
        chunk = txn.get(CHUNK_KEY.pack(body_id, n), db=dbs.body_chunks)
        if chunk is None:
            return
        if compressed:
            chunk = body_codec.decompress_chunk(chunk)
        start = offset - n * CHUNK_SIZE
        piece = bytes(chunk[start : min(len(chunk), end - n * CHUNK_SIZE)])
        if not piece:
            return
        yield offset, piece
        offset += len(piece)
        n += 1
