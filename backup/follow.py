"""`mailha backup follow`: keep an incremental chain current by polling the store.

Each cycle reads the environment's last committed LMDB transaction id (one
read of the lock file's meta, whatever the store's size) and makes an
incremental only when a write transaction committed since the last cycle's
look. At most `interval` plus one incremental's duration of acknowledged mail
is not yet in the chain (the RPO bound each cycle reports as lag; `mailha bench
backup` measures it under write load).
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from backup import repository, snapshot
from backup.create import Created, create_full, create_incremental


@dataclass(frozen=True)
class FollowStep:
    created: Created | None  # None: nothing changed since the last cycle
    lag_seconds: float  # age of the chain's newest member when this cycle looked


def last_transaction(lmdb_dir: pathlib.Path) -> int:
    """The id of the store's last committed write transaction: it moves on every change."""
    env = snapshot.open_live(lmdb_dir)
    try:
        return int(env.info()["last_txnid"])
    finally:
        env.close()


class Follower:
    def __init__(self, lmdb_dir: pathlib.Path, repo: pathlib.Path) -> None:
        self.lmdb_dir = lmdb_dir
        self.repo = repo
        self._seen = -1

    def step(self) -> FollowStep:
        with repository.locked(self.repo):
            # Read before the backup's own snapshot: a write in between makes one more incremental,
            # never a missed one.
            txnid = last_transaction(self.lmdb_dir)
            if not repository.backup_dirs(self.repo):
                created = create_full(self.lmdb_dir, self.repo)
                self._seen = txnid
                return FollowStep(created, 0.0)
            newest = repository.chain(repository.latest(self.repo))[-1]
            lag = max(0.0, time.time() - newest.manifest.created)
            if txnid == self._seen:
                return FollowStep(None, lag)
            created = create_incremental(self.lmdb_dir, self.repo, newest)
            self._seen = txnid
            return FollowStep(created, lag)

    def run(self, interval: float, cycles: int | None, report: Callable[[FollowStep], None]) -> None:
        done = 0
        while cycles is None or done < cycles:
            started = time.monotonic()
            report(self.step())
            done += 1
            if cycles is not None and done >= cycles:
                return
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
