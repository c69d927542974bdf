"""The writer epoch: checked inside every write transaction, raised by Fence."""

from __future__ import annotations

import lmdb

from store.errors import FailedPrecondition
from store.schema import U64, Dbs

EPOCH_KEY = b"epoch"


def stored_epoch(txn: lmdb.Transaction, dbs: Dbs) -> int:
    raw = txn.get(EPOCH_KEY, db=dbs.meta)
    return 0 if raw is None else int(U64.unpack(raw)[0])


def check_epoch(txn: lmdb.Transaction, dbs: Dbs, epoch: int) -> None:
    check_against(stored_epoch(txn, dbs), epoch)


def check_against(stored: int, epoch: int) -> None:
    """FailedPrecondition unless `epoch` is the stored one (read in the same write transaction)."""
    if epoch < stored:
        raise FailedPrecondition(f"fenced: writer epoch {epoch} is older than the store's epoch {stored}")
    if epoch > stored:
        raise FailedPrecondition(f"epoch {epoch} not established; call Fence first (the store's epoch is {stored})")


def fence(txn: lmdb.Transaction, dbs: Dbs, epoch: int) -> int:
    """Raise the stored epoch to `epoch`; never lower it."""
    stored = stored_epoch(txn, dbs)
    if epoch < stored:
        raise FailedPrecondition(f"fenced: cannot lower the store's epoch {stored} to {epoch}")
    if epoch > stored:
        txn.put(EPOCH_KEY, U64.pack(epoch), db=dbs.meta)
    return epoch
