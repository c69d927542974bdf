"""The store's verified-credentials cache on the LOGIN path: a hit is cheap, concurrent
first logins share one scrypt, a password change during a verification is not undone,
and a burst of first-time logins does not hold up other calls."""

from __future__ import annotations

import threading
import time

import pytest

from mailha_api import store_pb2
from store import passwords
from store.engine import MailStore
from store.errors import Unauthenticated, Unavailable
from store.passwords import CredentialCache, hash_password


def _count_hashes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = passwords.verify_password

    def counting(password: str, stored: str) -> bool:
        calls[0] += 1
        return real(password, stored)

    monkeypatch.setattr(passwords, "verify_password", counting)
    return calls


def test_concurrent_first_logins_share_one_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = hash_password("pw")
    calls = _count_hashes(monkeypatch)
    cache = CredentialCache()
    results: list[bool] = []
    start = threading.Barrier(8)

    def login() -> None:
        start.wait()
        results.append(cache.verify("alice", "pw", stored))

    threads = [threading.Thread(target=login) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 8
    # Threads that arrived while the first hashed waited for it; the barrier lets them all arrive at once.
    assert calls[0] <= 2
    assert not cache.verify("alice", "wrong", stored)
    assert calls[0] <= 3
    before = calls[0]
    assert cache.verify("alice", "pw", stored)  # cached: no hash
    assert calls[0] == before


def test_cache_hit_is_fast() -> None:
    stored = hash_password("pw")
    cache = CredentialCache()
    assert cache.verify("alice", "pw", stored)
    start = time.perf_counter()
    for _ in range(1000):
        assert cache.verify("alice", "pw", stored)
    per_hit = (time.perf_counter() - start) / 1000
    assert per_hit < 0.001  # an HMAC and a dict lookup, against ~60 ms for scrypt


def test_password_change_during_verification_is_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = hash_password("old")
    cache = CredentialCache()
    real = passwords.verify_password

    def slow(password: str, hashed: str) -> bool:
        ok = real(password, hashed)
        cache.forget_user("alice")  # the password changed while we hashed
        return ok

    monkeypatch.setattr(passwords, "verify_password", slow)
    assert cache.verify("alice", "old", stored)  # this login saw the old password
    assert not cache.check("alice", "old")  # but it is not remembered past the change


def test_store_authenticate_uses_cache_and_forgets_on_password_change(mail_store: MailStore) -> None:
    mail_store.create_user(store_pb2.CreateUserRequest(epoch=1, name="alice", password="pw"))
    assert mail_store.authenticate("alice", "pw") == "alice"
    assert mail_store.logins.check("alice", "pw")
    mail_store.set_password(store_pb2.SetPasswordRequest(epoch=1, name="alice", password="new"))
    with pytest.raises(Unauthenticated):
        mail_store.authenticate("alice", "pw")
    assert mail_store.authenticate("alice", "new") == "alice"


def test_hash_burst_leaves_cached_logins_fast(mail_store: MailStore) -> None:
    for name in ("alice", *(f"u{i}" for i in range(12))):
        mail_store.create_user(store_pb2.CreateUserRequest(epoch=1, name=name, password="pw"))
    assert mail_store.authenticate("alice", "pw") == "alice"

    def first_login(name: str) -> None:
        try:
            mail_store.authenticate(name, "pw")
        except Unavailable:
            pass  # waited too long for a hash slot (a loaded machine): a bounded wait, by design

    burst = [threading.Thread(target=first_login, args=(f"u{i}",)) for i in range(12)]
    for t in burst:
        t.start()
    try:
        start = time.perf_counter()
        assert mail_store.authenticate("alice", "pw") == "alice"
        # The cached login does not wait for the 12 first-time hashes (≈ 0.7 s of CPU).
        assert time.perf_counter() - start < 0.2
    finally:
        for t in burst:
            t.join()
