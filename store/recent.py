"""The \\Recent boundary of each mailbox (RFC 3501 2.3.2).

Messages with UID >= the boundary have not been seen by any session yet; the
first session that selects the mailbox read-write (or that is told about them
while it has the mailbox selected) claims them: the boundary moves to the
UIDNEXT of that moment, in one write transaction, so exactly one session sees
each message as recent. Kept in the `meta` database under
`b"recent\\0" + mailbox_id u64` -> first unclaimed UID u32; absent = 1 (every
message recent: a mailbox nobody has selected yet).
"""

from __future__ import annotations

import lmdb

from store import flag_index
from store.schema import U32, U64, Dbs


def _key(mid: int) -> bytes:
    return b"recent\0" + U64.pack(mid)


def boundary(txn: lmdb.Transaction, dbs: Dbs, mid: int) -> int:
    raw = txn.get(_key(mid), db=dbs.meta)
    return int(U32.unpack(raw)[0]) if raw is not None else 1


def claim(txn: lmdb.Transaction, dbs: Dbs, mid: int, up_to: int) -> tuple[int, int]:
    """Claim UIDs [boundary, up_to) for the caller; return that range (empty if taken)."""
    low = boundary(txn, dbs, mid)
    if up_to <= low:
        return low, low
    txn.put(_key(mid), U32.pack(up_to), db=dbs.meta)
    return low, up_to


def count(txn: lmdb.Transaction, dbs: Dbs, mid: int) -> int:
    """Messages still recent (UID >= boundary): STATUS RECENT, EXAMINE. Counted on the flag
    index (a segment per 64 messages): a mailbox nobody selected yet is all recent."""
    return flag_index.count_from(txn, dbs.flag_index, mid, boundary(txn, dbs, mid))


def forget(txn: lmdb.Transaction, dbs: Dbs, mid: int) -> None:
    txn.delete(_key(mid), db=dbs.meta)
