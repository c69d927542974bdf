"""The identity of one LMTP delivery, for the store's exactly-once check
(store/delivery_dedupe.py): an MTA that retries a transaction whose reply it
never saw sends the same envelope sender, recipient and message bytes again,
so a digest of those three names the delivery. The trace prefix lmtpd adds
(Return-Path: sender, Delivered-To: recipient) carries no timestamp, so it
is hashed as it is stored.
"""

from __future__ import annotations

import hashlib

from lmtpd.delivery import MessageSource

_PIECE = 256 * 1024
_DOMAIN = b"mailha lmtp delivery v1\0"


def body_digest(body: MessageSource) -> bytes:
    h = hashlib.sha256()
    for piece in body.pieces(_PIECE):
        h.update(piece)
    return h.digest()


def delivery_identity(user: str, prefix: bytes, digest: bytes) -> bytes:
    """32 bytes: the store user, the trace prefix (sender and recipient) and the body digest."""
    h = hashlib.sha256(_DOMAIN)
    for part in (user.encode(), prefix, digest):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()
