"""Flag lists interned as small ids: what the flag index stores per message.

A mailbox uses a handful of distinct flag lists (\\Seen, \\Seen \\Answered,
a few keywords), so the index keeps a u32 id per message instead of the
text, and SEARCH on a flag decides per id, not per message. Ids are global,
never reused and never removed (a list is a few bytes), allocated in the
write transaction that first needs them.
"""

from __future__ import annotations

import hashlib
from typing import Final

import lmdb

from store.schema import U32, Dbs

# LMDB keys hold at most 511 bytes; a flag list may be 128 keywords of 128 characters.
# Longer lists are keyed by their SHA-256 (and the list read back to make sure).
_MAX_PLAIN_KEY: Final = 400


def _key(text: bytes) -> bytes:
    if len(text) <= _MAX_PLAIN_KEY:
        return b"f" + text  # prefixed: LMDB keys may not be empty
    return b"h" + hashlib.sha256(text).digest()


def encode(flags: tuple[str, ...]) -> bytes:
    return " ".join(flags).encode("ascii")


def decode(raw: bytes) -> tuple[str, ...]:
    return tuple(raw.decode("ascii").split(" ")) if raw else ()


def intern(txn: lmdb.Transaction, dbs: Dbs, flags: tuple[str, ...]) -> int:
    """The id of `flags` (as stored in the message record), allocated on first use."""
    text = encode(flags)
    key = _key(text)
    found = txn.get(key, db=dbs.flagset_ids)
    if found is not None:
        flag_id = int(U32.unpack(found)[0])
        if key[:1] == b"h" and txn.get(found, db=dbs.flagsets) != text:
            raise ValueError("flag set digest collision")  # SHA-256: not expected, but never a wrong list
        return flag_id
    new_id = int(txn.stat(dbs.flagsets)["entries"]) + 1
    txn.put(U32.pack(new_id), text, db=dbs.flagsets)
    txn.put(key, U32.pack(new_id), db=dbs.flagset_ids)
    return new_id


def flags_of(txn: lmdb.Transaction, dbs: Dbs, flag_id: int) -> tuple[str, ...]:
    raw = txn.get(U32.pack(flag_id), db=dbs.flagsets)
    if raw is None:  # cannot happen: an id is written with the first message that uses it
        raise KeyError(f"flag set {flag_id} missing")
    return decode(bytes(raw))
