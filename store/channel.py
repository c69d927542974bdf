"""The one way to reach the store over gRPC: the channel and the sizes every client frames by.

Every client of the store (admin CLI, imapd, lmtpd, importer, the agent, web,
chaos, bench) opens its channel here, so the message limits match the
server's and an append is cut the same way everywhere.
"""

from __future__ import annotations

from typing import Final

import grpc

MAX_MESSAGE: Final = 8 * 1024 * 1024  # the server's limit on one gRPC message, both ways
PIECE: Final = 256 * 1024  # one streamed append piece (as large as the store's body chunks)
ONE_REQUEST_LIMIT: Final = 4 * 1024 * 1024  # an append up to this size goes in one request
CHANNEL_OPTIONS: Final = (
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
)


def open_channel(address: str) -> grpc.Channel:
    """A channel to the store at "unix:/path/store.sock" or "HOST:PORT"."""
    return grpc.insecure_channel(address, options=list(CHANNEL_OPTIONS))
