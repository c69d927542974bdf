"""Framing of the store's local write socket, without I/O (both ends use it).

A frame is a 4-byte big-endian length and that many bytes of one serialized
message: LocalWritesHello / LocalWritesWelcome first, then WriteRequest from
the front end and WriteReply from the store (store/local_writes.py). A frame
is bounded by the gRPC message limit (store.channel.MAX_MESSAGE), so a write
that fits the Writes stream fits here and nothing bigger is buffered.
"""

from __future__ import annotations

import os
import pathlib
import struct
from typing import Final

from store.channel import MAX_MESSAGE

VERSION: Final = 1
SOCKET_NAME: Final = "writes.sock"  # in the store's data directory
MAX_FRAME: Final = MAX_MESSAGE
_HEADER: Final = struct.Struct(">I")
# sockaddr_un holds 108 bytes with the NUL; a longer path is reached through /proc/self/fd.
_SUN_PATH_MAX: Final = 107


class FrameError(Exception):
    """The peer sent something that is not a frame of this protocol."""


def socket_path(data_dir: pathlib.Path) -> pathlib.Path:
    return data_dir / SOCKET_NAME


def encode(payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME:
        raise FrameError(f"a frame of {len(payload)} bytes is over the limit of {MAX_FRAME}")
    return _HEADER.pack(len(payload)) + payload


class ShortPath:
    """A name for `path` that fits sockaddr_un: the path itself, or its directory opened
    and named through /proc/self/fd (tests' temporary directories are often longer).
    Use as a context manager; the directory stays open until it exits."""

    def __init__(self, path: pathlib.Path) -> None:
        self._path = path
        self._fd: int | None = None

    def __enter__(self) -> str:
        text = str(self._path)
        if len(os.fsencode(text)) <= _SUN_PATH_MAX:
            return text
        self._fd = os.open(self._path.parent, os.O_PATH | os.O_DIRECTORY)
        return f"/proc/self/fd/{self._fd}/{self._path.name}"

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class FrameReader:
    """Bytes in, whole frames out; refuses a frame over MAX_FRAME as soon as its header is in."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._want: int | None = None  # length of the frame being read, once its header is in

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        """Bytes fed and not yet returned in a frame (a frame's header counts once read)."""
        return len(self._buffer) + (_HEADER.size if self._want is not None else 0)

    def next_frame(self) -> bytes | None:
        """The next whole frame, or None until more bytes are fed; FrameError for an oversized one."""
        if self._want is None:
            if len(self._buffer) < _HEADER.size:
                return None
            (self._want,) = _HEADER.unpack_from(self._buffer)
            if self._want > MAX_FRAME:
                raise FrameError(f"a frame of {self._want} bytes is over the limit of {MAX_FRAME}")
            del self._buffer[: _HEADER.size]
        if len(self._buffer) < self._want:
            return None
        frame = bytes(self._buffer[: self._want])
        del self._buffer[: self._want]
        self._want = None
        return frame
