"""Flag lists interned as small ids: what the flag index stores per message.

A mailbox uses a handful of distinct flag lists (\\Seen, \\Seen \\Answered,
a few keywords), so the index keeps a u32 id per message instead of the
text, and SEARCH on a flag decides per id, not per message. Ids are global,
never reused and never removed (a list is a few bytes), allocated in the
write transaction that first needs them.
"""

from __future__ import annotations

import lmdb

from store.schema import U32, Dbs


def encode(flags: tuple[str, ...]) -> bytes:
    return " ".join(flags).encode("ascii")


def decode(raw: bytes) -> tuple[str, ...]:
    return tuple(raw.decode("ascii").split(" ")) if raw else ()


def intern(txn: lmdb.Transaction, dbs: Dbs, flags: tuple[str, ...]) -> int:
    """The id of `flags` (as stored in the message record), allocated on first use."""
    text = encode(flags)
    found = txn.get(b"f" + text, db=dbs.flagset_ids)  # prefixed: LMDB keys may not be empty
    if found is not None:
        return int(U32.unpack(found)[0])
    new_id = int(txn.stat(dbs.flagsets)["entries"]) + 1
    txn.put(U32.pack(new_id), text, db=dbs.flagsets)
    txn.put(b"f" + text, U32.pack(new_id), db=dbs.flagset_ids)
    return new_id


def flags_of(txn: lmdb.Transaction, dbs: Dbs, flag_id: int) -> tuple[str, ...]:
    raw = txn.get(U32.pack(flag_id), db=dbs.flagsets)
    if raw is None:  # cannot happen: an id is written with the first message that uses it
        raise KeyError(f"flag set {flag_id} missing")
    return decode(bytes(raw))
