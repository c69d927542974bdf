"""`mailha backup follow`: keep an incremental chain current by polling the store's snapshot.

Each cycle reads the store's state in one read transaction (every mailbox's
UIDVALIDITY/HIGHESTMODSEQ and a digest of the databases copied whole) and
makes an incremental only when it differs from the last cycle's. At most
`interval` plus one incremental's duration of acknowledged mail is not yet
in the chain (the RPO bound each cycle reports as lag).
"""

from __future__ import annotations

import hashlib
import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from backup import repository, snapshot
from backup.create import DELTA_DBS, Created, create_full, create_incremental


@dataclass(frozen=True)
class FollowStep:
    created: Created | None  # None: nothing changed since the last cycle
    lag_seconds: float  # age of the chain's newest member when this cycle looked


def state_digest(lmdb_dir: pathlib.Path) -> str:
    """What an incremental would differ by: mailboxes' modseqs, epoch, and every whole-copied database."""
    env = snapshot.open_live(lmdb_dir)
    try:
        digest = hashlib.sha256()
        with snapshot.read_snapshot(env) as txn:
            state = snapshot.read_state(env, txn)
            digest.update(repr((state.epoch, state.lineage, state.mailboxes)).encode())
            for name, db in sorted(snapshot.handles(env, txn).items()):
                if name in DELTA_DBS:
                    continue
                digest.update(name.encode() + b"\0")
                for key, value in txn.cursor(db=db):
                    digest.update(
                        len(key).to_bytes(4, "big") + bytes(key) + len(value).to_bytes(4, "big") + bytes(value)
                    )
        return digest.hexdigest()
    finally:
        env.close()


class Follower:
    def __init__(self, lmdb_dir: pathlib.Path, repo: pathlib.Path) -> None:
        self.lmdb_dir = lmdb_dir
        self.repo = repo
        self._seen = ""

    def step(self) -> FollowStep:
        with repository.locked(self.repo):
            digest = state_digest(self.lmdb_dir)
            if not repository.backup_dirs(self.repo):
                created = create_full(self.lmdb_dir, self.repo)
                self._seen = digest
                return FollowStep(created, 0.0)
            newest = repository.chain(repository.latest(self.repo))[-1]
            lag = max(0.0, time.time() - newest.manifest.created)
            if digest == self._seen:
                return FollowStep(None, lag)
            created = create_incremental(self.lmdb_dir, self.repo, newest)
            self._seen = digest
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
