"""Where an IMAP import got to, per source folder: UIDVALIDITY and last copied UID.

Why a state file rather than marking messages: IMAP UIDs only grow within
one UIDVALIDITY, so "everything up to UID n is copied" is one number per
folder, needs no read of the destination, and leaves the copied messages
untouched (a marker header would change their bytes, a keyword would show
up in users' clients). It is written after every message the store has
acknowledged (atomically: temp file + rename), so an interrupted run
resumes exactly after the last durable copy. If the source folder's
UIDVALIDITY changed, its UIDs mean something else: the folder is copied
again from the start and the report says so.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class FolderMarker:
    uidvalidity: int
    last_uid: int  # every source UID up to this one is in the store
    # Copied UIDs above last_uid: after a refused message the prefix stops
    # growing (so the refused one is tried again next run) but later copies
    # must not be repeated.
    above: frozenset[int] = frozenset()

    def copied(self, uid: int) -> bool:
        return uid <= self.last_uid or uid in self.above


def state_path(state_dir: pathlib.Path, host: str, user: str, to_user: str) -> pathlib.Path:
    """One file per source account and destination user. Not keyed by port: the
    same account reached over 993 (TLS) or 143 (STARTTLS) is the same source."""
    raw = f"imap-{host}-{user}-to-{to_user}"
    return state_dir / (re.sub(r"[^A-Za-z0-9._@-]", "_", raw) + ".json")


class ResumeState:
    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._folders: dict[str, FolderMarker] = {}
        if path.exists():
            data = json.loads(path.read_text("utf-8"))
            for name, entry in data.get("folders", {}).items():
                above = frozenset(int(u) for u in entry.get("above", []))
                self._folders[name] = FolderMarker(int(entry["uidvalidity"]), int(entry["last_uid"]), above)

    def marker(self, folder: str) -> FolderMarker | None:
        return self._folders.get(folder)

    def record(self, folder: str, uidvalidity: int, uid: int, *, contiguous: bool) -> None:
        """`uid` is in the store; `contiguous`: so is every source UID below it."""
        old = self._folders.get(folder)
        if old is None or old.uidvalidity != uidvalidity:
            old = FolderMarker(uidvalidity, 0)
        if contiguous:
            marker = FolderMarker(uidvalidity, uid, frozenset(u for u in old.above if u > uid))
        else:
            marker = FolderMarker(uidvalidity, old.last_uid, old.above | {uid})
        self._folders[folder] = marker
        self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "folders": {
                n: {"uidvalidity": m.uidvalidity, "last_uid": m.last_uid, "above": sorted(m.above)}
                for n, m in self._folders.items()
            }
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), "utf-8")
        os.replace(tmp, self.path)
