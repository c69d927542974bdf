"""zstd compression of stored bodies, where it pays.

A body is compressed chunk by chunk (each CHUNK_SIZE piece of the message on
its own, so a partial FETCH decompresses at most the chunks it touches) when
it is at least MIN_SIZE bytes and the compressed chunks together save at
least a tenth; otherwise it is stored as it came. Whether a body's chunks are
compressed is a bit of its `body_meta` record (bodies.py), so bodies written
before compression existed read as they always did.

Why zstd (PyPI `zstandard`): mail text compresses ~3x at level 3 for tens of
microseconds per message, and LMDB keeps a value under ~2 KB inside a shared
page but gives a larger one whole 4 KiB overflow pages: a 6 KB message
compressed to 2 KB costs one page or less instead of two.
"""

from __future__ import annotations

import threading
from typing import Final

import zstandard

from store.schema import CHUNK_SIZE

MIN_SIZE: Final = 512
LEVEL: Final = 3
_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    # zstd contexts are not thread-safe: one per thread (RPC threads compress, readers decompress).
    c: zstandard.ZstdCompressor | None = getattr(_local, "compressor", None)
    if c is None:
        c = _local.compressor = zstandard.ZstdCompressor(level=LEVEL)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if d is None:
        d = _local.decompressor = zstandard.ZstdDecompressor()
    return d


def compress_chunks(data: bytes) -> list[bytes] | None:
    """The compressed CHUNK_SIZE pieces of `data`, or None when compression does not pay."""
    if len(data) < MIN_SIZE:
        return None
    c = _compressor()
    view = memoryview(data)
    packed = [c.compress(view[at : at + CHUNK_SIZE]) for at in range(0, len(data), CHUNK_SIZE)]
    if sum(len(p) for p in packed) * 10 > len(data) * 9:
        return None  # incompressible (already compressed attachments, random bytes)
    return packed


def decompress_chunk(packed: bytes | memoryview) -> bytes:
    return _decompressor().decompress(packed, max_output_size=CHUNK_SIZE)
