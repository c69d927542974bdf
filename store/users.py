"""Users, their addresses and quotas: LMDB operations (no I/O beyond the txn)."""

from __future__ import annotations

import lmdb

from mailha_api import store_pb2
from store import names
from store.errors import AlreadyExists, InvalidArgument, NotFound
from store.schema import Dbs, QuotaRecord, user_key, user_prefix

DEFAULT_MAILBOXES = (
    ("INBOX", ""),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)


def require_user(txn: lmdb.Transaction, dbs: Dbs, name: str) -> str:
    names.user_name(name)
    if txn.get(name.encode(), db=dbs.users) is None:
        raise NotFound(f"user {name!r} does not exist")
    return name


def password_hash(txn: lmdb.Transaction, dbs: Dbs, name: str) -> str | None:
    raw = txn.get(name.encode(), db=dbs.users)
    return None if raw is None else bytes(raw).decode("ascii")


def create(txn: lmdb.Transaction, dbs: Dbs, name: str, pw_hash: str, quota: int) -> None:
    names.user_name(name)
    if not txn.put(name.encode(), pw_hash.encode("ascii"), db=dbs.users, overwrite=False):
        raise AlreadyExists(f"user {name!r} already exists")
    txn.put(name.encode(), QuotaRecord(quota, 0, 0).pack(), db=dbs.quota)


def set_password(txn: lmdb.Transaction, dbs: Dbs, name: str, pw_hash: str) -> None:
    require_user(txn, dbs, name)
    txn.put(name.encode(), pw_hash.encode("ascii"), db=dbs.users)


def delete_record(txn: lmdb.Transaction, dbs: Dbs, name: str) -> None:
    """Remove the user, its quota and its addresses (mailboxes go first, elsewhere)."""
    for addr in addresses_of(txn, dbs, name):
        txn.delete(addr.encode(), db=dbs.addresses)
        txn.delete(user_key(name, addr), db=dbs.user_addresses)
    txn.delete(name.encode(), db=dbs.quota)
    txn.delete(name.encode(), db=dbs.user_settings)
    txn.delete(name.encode(), db=dbs.users)


def all_users(txn: lmdb.Transaction, dbs: Dbs) -> list[str]:
    return [bytes(k).decode() for k in txn.cursor(db=dbs.users).iternext(keys=True, values=False)]


def quota(txn: lmdb.Transaction, dbs: Dbs, name: str) -> QuotaRecord:
    raw = txn.get(name.encode(), db=dbs.quota)
    if raw is None:
        raise NotFound(f"user {name!r} does not exist")
    return QuotaRecord.unpack(raw)


def put_quota(txn: lmdb.Transaction, dbs: Dbs, name: str, record: QuotaRecord) -> None:
    txn.put(name.encode(), record.pack(), db=dbs.quota)


def info(txn: lmdb.Transaction, dbs: Dbs, name: str) -> store_pb2.UserInfo:
    q = quota(txn, dbs, name)
    return store_pb2.UserInfo(
        name=name,
        quota_bytes=q.limit,
        usage_bytes=q.usage,
        messages=q.messages,
        addresses=addresses_of(txn, dbs, name),
    )


# ---- addresses -------------------------------------------------------------


def addresses_of(txn: lmdb.Transaction, dbs: Dbs, name: str) -> list[str]:
    prefix = user_prefix(name)
    cur = txn.cursor(db=dbs.user_addresses)
    out: list[str] = []
    if cur.set_range(prefix):
        for key in cur.iternext(keys=True, values=False):
            key = bytes(key)
            if not key.startswith(prefix):
                break
            out.append(key[len(prefix) :].decode())
    return out


def all_addresses(txn: lmdb.Transaction, dbs: Dbs) -> list[tuple[str, str]]:
    return [(bytes(k).decode(), bytes(v).decode()) for k, v in txn.cursor(db=dbs.addresses)]


def add_address(txn: lmdb.Transaction, dbs: Dbs, addr: str, user: str) -> store_pb2.AddressInfo:
    addr = names.address(addr)
    require_user(txn, dbs, user)
    if not txn.put(addr.encode(), user.encode(), db=dbs.addresses, overwrite=False):
        owner = bytes(txn.get(addr.encode(), db=dbs.addresses) or b"?").decode()
        raise AlreadyExists(f"address {addr!r} already belongs to user {owner!r}")
    txn.put(user_key(user, addr), b"", db=dbs.user_addresses)
    return store_pb2.AddressInfo(address=addr, user=user)


def delete_address(txn: lmdb.Transaction, dbs: Dbs, addr: str) -> None:
    addr = names.address(addr)
    raw = txn.get(addr.encode(), db=dbs.addresses)
    if raw is None:
        raise NotFound(f"address {addr!r} is not known")
    txn.delete(addr.encode(), db=dbs.addresses)
    txn.delete(user_key(bytes(raw).decode(), addr), db=dbs.user_addresses)


def resolve_address(txn: lmdb.Transaction, dbs: Dbs, addr: str) -> store_pb2.AddressInfo:
    canonical = names.address(addr)
    raw = txn.get(canonical.encode(), db=dbs.addresses)
    if raw is None:
        untagged = names.strip_tag(canonical)
        if untagged is not None:
            raw = txn.get(untagged.encode(), db=dbs.addresses)
            canonical = untagged
    if raw is None:
        raise NotFound(f"address {addr!r} is not known")
    return store_pb2.AddressInfo(address=canonical, user=bytes(raw).decode())


def login_name(txn: lmdb.Transaction, dbs: Dbs, name: str) -> str | None:
    """The user a login name means: a user name, or an address of one; None if neither."""
    if "@" in name:
        try:
            return resolve_address(txn, dbs, name).user
        except (NotFound, InvalidArgument):
            return None
    if names.USER_RE.fullmatch(name) and txn.get(name.encode(), db=dbs.users) is not None:
        return name
    return None
