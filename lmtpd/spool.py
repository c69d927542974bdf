"""The spool a message is received into before it is appended.

Small messages stay in memory; past `memory_limit` the spool moves to an
unlinked temporary file, so a 20 MiB message is held once on disk (page
cache) instead of twice in memory, and is read back in pieces per recipient.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

DEFAULT_MEMORY_LIMIT = 1024 * 1024


class Spool:
    def __init__(self, memory_limit: int = DEFAULT_MEMORY_LIMIT, directory: str | None = None) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=memory_limit, dir=directory)  # noqa: SIM115 - closed by close()
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._size += len(data)

    def pieces(self, piece_size: int) -> Iterator[bytes]:
        self._file.seek(0)
        while True:
            piece = self._file.read(piece_size)
            if not piece:
                return
            yield piece

    def close(self) -> None:
        self._file.close()
