"""A user's mailboxes in a backup, as an import source: restoring one user is importing from the backup.

Messages keep their flags and internal dates (the store gives them new UIDs
in the target mailboxes); the importer's pipeline, progress and summary do
the rest.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import lmdb

from backup import snapshot
from backup.errors import BackupError
from backup.manifest import MailboxState
from importer.source import SourceFolder, SourceMessage
from store.bodies import read_all
from store.schema import MSG_KEY, MessageRecord

NOT_RESTORED = frozenset({"\\Recent"})


class BackupUserSource:
    """The mailboxes of `user` (or only `mailbox`) in a restored or copied environment, under `into`."""

    def __init__(self, lmdb_dir: pathlib.Path, user: str, into: str, mailbox: str | None = None) -> None:
        self.env = snapshot.open_copy(lmdb_dir)
        self.user = user
        self.into = into.strip("/")
        with snapshot.read_snapshot(self.env) as txn:
            state = snapshot.read_state(self.env, txn)
        boxes = [m for m in state.mailboxes if m.user == user and not m.noselect]
        if mailbox is not None:
            boxes = [m for m in boxes if m.name == mailbox or (mailbox.upper() == "INBOX" and m.name == "INBOX")]
            if not boxes:
                raise BackupError(f"the backup has no mailbox {mailbox!r} of user {user!r}")
        if not boxes:
            raise BackupError(f"the backup has no mailbox of user {user!r}")
        self._boxes = {self.target(m.name): m for m in sorted(boxes, key=lambda m: m.name.split("/"))}

    def target(self, name: str) -> str:
        return f"{self.into}/{name}"

    def close(self) -> None:
        self.env.close()

    def folders(self) -> Iterator[SourceFolder]:
        for name in self._boxes:
            yield SourceFolder(name)

    def estimate(self) -> tuple[int | None, int | None]:
        return sum(m.messages for m in self._boxes.values()), sum(m.size for m in self._boxes.values())

    def acknowledged(self, folder: SourceFolder, message: SourceMessage) -> None:
        return None

    def refused(self, folder: SourceFolder, message: SourceMessage) -> None:
        return None

    def take_unread(self) -> list[str]:
        return []  # a backup has no entries to skip unread (the importer's protocol on main asks)

    def messages(self, folder: SourceFolder) -> Iterator[SourceMessage]:
        box = self._boxes[folder.name]
        yield from read_mailbox(self.env, box)


def read_mailbox(env: lmdb.Environment, box: MailboxState) -> Iterator[SourceMessage]:
    """The messages of `box` in UID order, each read in its own short transaction."""
    after = 0
    while True:
        with snapshot.read_snapshot(env) as txn:
            dbs = snapshot.handles(env, txn)
            cur = txn.cursor(db=dbs["messages"])
            if not cur.set_range(MSG_KEY.pack(box.mailbox_id, after + 1)):
                return
            key = bytes(cur.key())
            mid, uid = MSG_KEY.unpack(key)
            if mid != box.mailbox_id:
                return
            rec = MessageRecord.unpack(cur.value())
            data = read_body(txn, dbs, rec.body_id)
        after = uid
        if len(data) != rec.size:
            raise BackupError(f"message {box.user}/{box.name} UID {uid}: body has {len(data)} of {rec.size} bytes")
        yield SourceMessage(
            data=data,
            flags=tuple(f for f in rec.flags if f not in NOT_RESTORED),
            internal_date=rec.internal_date,
            tz_offset_minutes=rec.tz_offset_minutes,
            origin=f"{box.name} UID {uid}",
            uid=uid,
        )


def read_body(txn: lmdb.Transaction, dbs: dict[str, lmdb._Database], body_id: int) -> bytes:
    """A body's bytes as they were appended (`store.bodies.read_all`: compressed chunks
    decompressed, pieces joined)."""
    return read_all(txn, dbs["body_meta"], dbs["body_chunks"], body_id)
