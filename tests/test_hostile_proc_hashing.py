"""Issue 9 item 14: passwords are hashed with argon2id at OWASP's minimum; hashes of
the first format (scrypt N=2^14) still verify and are replaced at the next login."""

from __future__ import annotations

import base64
import hashlib
import os
import time

import pytest

from mailha_api import store_pb2
from store import users
from store.engine import MailStore
from store.errors import Unauthenticated
from store.passwords import hash_password, needs_rehash, verify_password


def old_scrypt_hash(password: str) -> str:
    """A hash exactly as the first release wrote it (scrypt N=2^14, r=8, p=1)."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt1$16384$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def stored_hash(store: MailStore, user: str) -> str:
    found = store.read(lambda txn: users.password_hash(txn, store.dbs, user))
    assert found is not None
    return found


def put_hash(store: MailStore, user: str, pw_hash: str) -> None:
    store.write(1, lambda ctx: users.set_password(ctx.txn, ctx.dbs, user, pw_hash))


def test_new_hashes_are_argon2id_with_owasp_parameters() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert "correct horse" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horse!", stored)
    assert not needs_rehash(stored)
    assert needs_rehash(old_scrypt_hash("x"))
    # A weaker argon2id (e.g. t=1, m=8 MiB) is upgraded as well.
    assert needs_rehash("$argon2id$v=19$m=8192,t=1,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43)


def test_old_scrypt_hash_verifies_and_is_upgraded_at_login(mail_store: MailStore) -> None:
    mail_store.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="unused"))
    put_hash(mail_store, "alice", old_scrypt_hash("old secret"))

    with pytest.raises(Unauthenticated):
        mail_store.authenticate("alice", "wrong")
    assert stored_hash(mail_store, "alice").startswith("scrypt1$16384$")  # a failed login changes nothing

    assert mail_store.authenticate("alice", "old secret") == "alice"
    upgraded = stored_hash(mail_store, "alice")
    assert upgraded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert verify_password("old secret", upgraded)

    mail_store.logins.forget_user("alice")  # next login verifies the new hash, not the cache
    assert mail_store.authenticate("alice", "old secret") == "alice"
    assert stored_hash(mail_store, "alice") == upgraded  # upgraded once, not at every login
    with pytest.raises(Unauthenticated):
        mail_store.authenticate("alice", "wrong")


def test_upgrade_never_undoes_a_password_change(mail_store: MailStore) -> None:
    mail_store.create_user(store_pb2.CreateUserRequest(epoch=1, name="bob", password="unused"))
    old = old_scrypt_hash("first")
    put_hash(mail_store, "bob", old)
    mail_store.set_password(store_pb2.SetPasswordRequest(epoch=1, name="bob", password="second"))
    # A login that verified against the old hash before the change must not write it back.
    mail_store._upgrade_hash("bob", "first", old)
    assert verify_password("second", stored_hash(mail_store, "bob"))
    assert not verify_password("first", stored_hash(mail_store, "bob"))


def test_repeat_logins_are_cheap_with_the_cache(mail_store: MailStore) -> None:
    mail_store.create_user(store_pb2.CreateUserRequest(epoch=1, name="carol", password="pw"))
    t0 = time.perf_counter()
    mail_store.authenticate("carol", "pw")
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(200):
        mail_store.authenticate("carol", "pw")
    per_login = (time.perf_counter() - t0) / 200
    assert per_login < first / 5, (per_login, first)
