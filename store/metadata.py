"""METADATA (RFC 5464): server and mailbox annotations, private and shared.

Named database `metadata` (owned by this module): user \\0, mailbox_id u64
(0: the server), the entry name lower-cased (entry names compare without
case) -> the entry name as written, \\0, the value. As in Dovecot, server
annotations belong to the user (there is no server-wide writable space one
user could fill for another), and since mailboxes are not shared between
users, a /shared entry of a mailbox is seen by its owner only, as is a
/private one. RENAME keeps a mailbox's annotations (they follow the mailbox
id); DELETE of the mailbox or of the user removes them.

Bounds (every size here comes from a client): an entry name is at most
MAX_NAME bytes, a value at most MAX_VALUE bytes (beyond: the METADATA MAXSIZE
refusal), a user has at most MAX_ENTRIES annotations holding at most
MAX_TOTAL bytes (beyond: TOOMANY), a GETMETADATA answers at most
MAX_ENTRIES entries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Final

import lmdb

from mailha_api import store_pb2
from store.errors import InvalidArgument
from store.schema import U64, Dbs

MAX_NAME: Final = 255
MAX_VALUE: Final = 64 * 1024
MAX_ENTRIES: Final = 500
MAX_TOTAL: Final = 1024 * 1024
DEPTH_INFINITY: Final = 2

# RFC 5464 3.2: "/private" or "/shared", then components; no "*", "%", empty components,
# trailing "/", or control characters.
_NAME: Final = re.compile(r"/(?:private|shared)(?:/[^/*%\x00-\x1f\x7f]+)+", re.IGNORECASE)
_SCOPE: Final = re.compile(r"/(?:private|shared)", re.IGNORECASE)


def check_name(name: str, *, lookup: bool = False) -> str:
    """The lower-cased key form of a valid entry name; InvalidArgument otherwise.

    A lookup may also name a whole scope ("/private", "/shared") to read below it with DEPTH.
    """
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME:
        raise InvalidArgument(f"metadata: an entry name is at most {MAX_NAME} bytes")
    if not (_NAME.fullmatch(name) or (lookup and _SCOPE.fullmatch(name))):
        raise InvalidArgument(f"metadata: invalid entry name {name[:64]!r}")
    return name.lower()


def _prefix(user: str, mid: int) -> bytes:
    return user.encode() + b"\0" + U64.pack(mid)


def _entries(txn: lmdb.Transaction, dbs: Dbs, prefix: bytes) -> Iterator[tuple[bytes, bytes, bytes]]:
    """(key, entry name, value) of every annotation under `prefix`."""
    cur = txn.cursor(db=dbs.metadata)
    if not cur.set_range(prefix):
        return
    for raw_key, raw in cur:
        key = bytes(raw_key)
        if not key.startswith(prefix):
            return
        name, _, value = bytes(raw).partition(b"\0")
        yield key, name, value


def get(
    txn: lmdb.Transaction, dbs: Dbs, user: str, mid: int, names: Iterable[str], *, depth: int
) -> list[store_pb2.MetadataEntry]:
    """The annotations named (and, with depth 1 / infinity, those one / any level below), in name order."""
    prefix = _prefix(user, mid)
    found: dict[bytes, store_pb2.MetadataEntry] = {}
    for wanted in names:
        key = check_name(wanted, lookup=True).encode("utf-8", "surrogatepass")
        raw = txn.get(prefix + key, db=dbs.metadata)
        if raw is not None:
            name, _, value = bytes(raw).partition(b"\0")
            found[key] = store_pb2.MetadataEntry(name=name.decode("utf-8", "surrogatepass"), value=value)
        if depth == 0:
            continue
        below = prefix + key + b"/"
        for k, name, value in _entries(txn, dbs, below):
            if depth == 1 and b"/" in k[len(below) :]:
                continue
            found[k[len(prefix) :]] = store_pb2.MetadataEntry(name=name.decode("utf-8", "surrogatepass"), value=value)
            if len(found) >= MAX_ENTRIES:
                break
    return [found[k] for k in sorted(found)]


def set_entries(
    txn: lmdb.Transaction, dbs: Dbs, user: str, mid: int, entries: Iterable[store_pb2.MetadataEntry]
) -> store_pb2.SetMetadataReply:
    """Write or remove (`remove`) the entries, all or nothing; a refusal writes nothing (RFC 5464 4.3)."""
    changes: dict[bytes, tuple[str, bytes] | None] = {}
    for entry in entries:
        key = check_name(entry.name).encode("utf-8", "surrogatepass")
        if entry.remove:
            changes[key] = None
            continue
        if len(entry.value) > MAX_VALUE:
            return store_pb2.SetMetadataReply(refused="MAXSIZE", max_size=MAX_VALUE)
        changes[key] = (entry.name, bytes(entry.value))
    prefix = _prefix(user, mid)
    if any(change is not None for change in changes.values()):
        count, total = _usage(txn, dbs, user)
        for key, change in changes.items():
            old = txn.get(prefix + key, db=dbs.metadata)
            if old is not None:
                count, total = count - 1, total - len(old)
            if change is not None:
                count, total = count + 1, total + len(change[0].encode()) + 1 + len(change[1])
        if count > MAX_ENTRIES or total > MAX_TOTAL:
            return store_pb2.SetMetadataReply(refused="TOOMANY")
    for key, change in changes.items():
        if change is None:
            txn.delete(prefix + key, db=dbs.metadata)
        else:
            name, value = change
            txn.put(prefix + key, name.encode("utf-8", "surrogatepass") + b"\0" + value, db=dbs.metadata)
    return store_pb2.SetMetadataReply()


def _usage(txn: lmdb.Transaction, dbs: Dbs, user: str) -> tuple[int, int]:
    """(annotations, bytes) of a user: at most MAX_ENTRIES to read, so cheap enough per write."""
    count = total = 0
    cur = txn.cursor(db=dbs.metadata)
    prefix = user.encode() + b"\0"
    if cur.set_range(prefix):
        for key, raw in cur:
            if not bytes(key).startswith(prefix):
                break
            count, total = count + 1, total + len(raw)
    return count, total


def forget(txn: lmdb.Transaction, dbs: Dbs, user: str, mid: int | None = None) -> None:
    """Remove the annotations of a mailbox (or, with mid None, all of the user's)."""
    prefix = user.encode() + b"\0" + (U64.pack(mid) if mid is not None else b"")
    cur = txn.cursor(db=dbs.metadata)
    if cur.set_range(prefix):
        while bytes(cur.key()).startswith(prefix):
            if not cur.delete():
                break
