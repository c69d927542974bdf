"""Password hashes at rest (scrypt) and a bounded, expiring cache of verified logins.

The hash is deliberately slow (~60 ms of CPU); the cache makes repeated
logins of the same user cheap without weakening what is stored. Cache keys
are an HMAC of (name, password) under a per-process random key, so the cache
never holds a password or anything that could be tested offline elsewhere.
Entries live an hour (Dovecot's auth_cache_ttl default): a password change or
user deletion drops the user's entries at once (`forget_user`), so the TTL only
bounds how often a returning user pays the hash. With 60 s, a few hundred users
coming back after a minute queued ~60 ms hashes behind each other and every
other RPC waited for the CPU (issue 13: 300-session LOGIN p99 12 s).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict

from store.errors import Internal

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_PREFIX = "scrypt1"
# Verifications hashing at once: about one per core. A burst of first-time logins
# then queues here instead of taking every core (and 16 MiB each) from the other RPCs.
_HASH_SLOTS = threading.BoundedSemaphore(max(1, min(4, os.cpu_count() or 2)))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"{_PREFIX}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        prefix, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        raise Internal("stored password hash has an unknown format") from None
    if prefix != _PREFIX:
        raise Internal(f"stored password hash has an unknown version {prefix!r}")
    expected = base64.b64decode(digest)
    cost_n, cost_r = int(n), int(r)
    with _HASH_SLOTS:
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=cost_n,
            r=cost_r,
            p=int(p),
            dklen=len(expected),
            maxmem=128 * cost_n * cost_r * 2 + 1024 * 1024,
        )
    return hmac.compare_digest(actual, expected)


class _Flight:
    """One verification in progress; concurrent logins with the same credentials wait for it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.error: Exception | None = None


class CredentialCache:
    """Bounded, expiring set of (user, password) pairs verified recently."""

    def __init__(self, max_entries: int = 10_000, ttl_seconds: float = 3600.0) -> None:
        self._key = os.urandom(32)
        self._max = max_entries
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._flights: dict[bytes, _Flight] = {}
        # Bumped by forget_user: a verification that started before a password change
        # must not put the old password back into the cache when it finishes.
        self._generation = 0

    def _token(self, user: str, password: str) -> bytes:
        return hmac.digest(self._key, user.encode() + b"\0" + password.encode("utf-8"), "sha256")

    def check(self, user: str, password: str) -> bool:
        token = self._token(user, password)
        with self._lock:
            return self._fresh(token)

    def _fresh(self, token: bytes) -> bool:
        entry = self._entries.get(token)
        if entry is None:
            return False
        if entry[1] < time.monotonic():
            del self._entries[token]
            return False
        return True

    def verify(self, user: str, password: str, stored: str) -> bool:
        """`verify_password` behind the cache: a hit costs one HMAC; concurrent misses
        for the same (user, password) share one hash computation (single flight)."""
        token = self._token(user, password)
        with self._lock:
            if self._fresh(token):
                return True
            flight = self._flights.get(token)
            leader = flight is None
            if flight is None:
                flight = self._flights[token] = _Flight()
            generation = self._generation
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.ok
        try:
            flight.ok = verify_password(password, stored)
        except Exception as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[token]
                if flight.ok and generation == self._generation:
                    self._put(token, user)
            flight.done.set()
        return flight.ok

    def remember(self, user: str, password: str) -> None:
        token = self._token(user, password)
        with self._lock:
            self._put(token, user)

    def _put(self, token: bytes, user: str) -> None:
        self._entries[token] = (user, time.monotonic() + self._ttl)
        self._entries.move_to_end(token)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def forget_user(self, user: str) -> None:
        with self._lock:
            self._generation += 1
            for token in [t for t, (u, _) in self._entries.items() if u == user]:
                del self._entries[token]

    def __len__(self) -> int:
        return len(self._entries)
