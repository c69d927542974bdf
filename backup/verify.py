"""Verifying a backup or a chain: checksums, then the store it restores to.

Files first (size and sha256 of every file each manifest lists; a damaged or
missing file is reported by name, so is an unlisted one). Then the
environment, opened read-only: the backup's own copy for a full backup, the
chain restored into a temporary directory otherwise. Every mailbox must match
the last manifest, every body's reference count must equal the number of
messages using it, and every message's body must be whole (all its chunks,
adding up to its size).
"""

from __future__ import annotations

import pathlib
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import lmdb
import zstandard

from backup import files, snapshot
from backup.errors import BackupError, Damaged
from backup.manifest import MANIFEST, Manifest
from backup.repository import Member, chain
from backup.restore import restore_chain
from backup.user_source import read_body
from store.bodies import extra_references, reference_count
from store.schema import BODY_META, MSG_KEY, U64, MessageRecord

Tick = Callable[[int], None]


@dataclass
class VerifyReport:
    members: int = 0
    messages: int = 0
    body_bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(backup_dir: pathlib.Path, *, tick: Tick | None = None) -> VerifyReport:
    report = VerifyReport()
    try:
        members = chain(backup_dir)
    except Damaged as exc:
        report.problems.append(str(exc))
        return report
    report.members = len(members)
    for member in members:
        report.problems += check_files(member, tick)
    if report.problems:
        return report  # the environment check would only repeat what the checksums said
    last = members[-1].manifest
    if len(members) == 1:
        env = snapshot.open_copy(members[0].path / "lmdb")
        try:
            check_environment(env, last, report)
        finally:
            env.close()
        return report
    with tempfile.TemporaryDirectory(prefix="mailha-verify-") as tmp:
        restored = pathlib.Path(tmp) / "lmdb"
        try:
            restore_chain(members, restored)
        except BackupError as exc:
            report.problems.append(f"restoring the chain failed: {exc}")
            return report
        env = snapshot.open_copy(restored)
        try:
            check_environment(env, last, report)
        finally:
            env.close()
    return report


def check_files(member: Member, tick: Tick | None = None) -> list[str]:
    problems: list[str] = []
    listed = {entry.path for entry in member.manifest.files}
    for entry in member.manifest.files:
        path = member.path / entry.path
        try:
            size = path.stat().st_size
        except OSError as exc:
            problems.append(f"{path}: missing ({exc.strerror})")
            continue
        if size != entry.size:
            problems.append(f"{path}: {size} bytes, the manifest says {entry.size}")
            continue
        if files.sha256_file(path, tick) != entry.sha256:
            problems.append(f"{path}: damaged (sha256 differs from the manifest)")
    for extra in sorted(p for p in member.path.rglob("*") if p.is_file()):
        rel = str(extra.relative_to(member.path))
        if rel != MANIFEST and rel not in listed:
            problems.append(f"{extra}: not listed in the manifest")
    return problems


def check_environment(env: lmdb.Environment, manifest: Manifest, report: VerifyReport) -> None:
    problems = report.problems
    with snapshot.read_snapshot(env) as txn:
        try:
            state = snapshot.read_state(env, txn)
            dbs = snapshot.handles(env, txn)
        except (BackupError, lmdb.Error) as exc:
            problems.append(f"cannot read the store in the backup: {exc}")
            return
        found = {m.mailbox_id: m for m in state.mailboxes}
        for want in manifest.mailboxes:
            got = found.pop(want.mailbox_id, None)
            if got != want:
                problems.append(f"mailbox {want.user}/{want.name} (id {want.mailbox_id}): {got} != manifest {want}")
        for extra in found.values():
            problems.append(f"mailbox {extra.user}/{extra.name} (id {extra.mailbox_id}) is not in the manifest")
        refs: Counter[int] = Counter()
        per_box: Counter[int] = Counter()
        for key, value in txn.cursor(db=dbs["messages"]):
            mid, uid = MSG_KEY.unpack(bytes(key))
            rec = MessageRecord.unpack(value)
            refs[rec.body_id] += 1
            per_box[mid] += 1
            report.messages += 1
            whole = _body_length(txn, dbs, rec.body_id)
            if whole != rec.size:
                problems.append(f"message {mid}/{uid}: body {rec.body_id} has {whole} of {rec.size} bytes")
            report.body_bytes += whole
        for want in manifest.mailboxes:
            if per_box[want.mailbox_id] != want.messages:
                problems.append(
                    f"mailbox {want.user}/{want.name}: {per_box[want.mailbox_id]} messages, manifest {want.messages}"
                )
        body_refs = dbs.get("body_refs")  # absent in backups of environments from before it
        for key, value in txn.cursor(db=dbs["body_meta"]):
            body_id = int(U64.unpack(bytes(key))[0])
            count = reference_count(BODY_META.unpack_from(bytes(value))[0])  # without the flag bits
            if body_refs is not None:
                count += extra_references(txn, body_refs, body_id)
            if count != refs.get(body_id, 0):
                problems.append(f"body {body_id}: reference count {count}, used by {refs.get(body_id, 0)} messages")
            refs.pop(body_id, None)
        for body_id in sorted(refs):
            problems.append(f"body {body_id}: used by {refs[body_id]} messages but has no metadata")


def _body_length(txn: lmdb.Transaction, dbs: dict[str, lmdb._Database], body_id: int) -> int:
    """The length of a body as appended (compressed chunks are decompressed: that they
    decompress at all is part of "every message readable")."""
    try:
        return len(read_body(txn, dbs, body_id))
    except zstandard.ZstdError:
        return -1
