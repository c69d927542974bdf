"""Password hashes at rest (argon2id) and a short-lived cache of verified logins.

New hashes are argon2id with OWASP's current minimum (m=19 MiB, t=2, p=1), in
the PHC string form argon2-cffi writes ("$argon2id$v=19$m=19456,t=2,p=1$...").
Hashes of the first format ("scrypt1$N$r$p$salt$digest", N=2^14) still verify;
`needs_rehash` tells the caller to replace them at the next successful login.

A hash costs tens of ms of CPU and 19 MiB; the cache makes repeated logins of
the same user cheap without weakening what is stored. Cache keys are an HMAC
of (name, password) under a per-process random key, so the cache never holds
a password or anything that could be tested offline elsewhere.

Entries live an hour (Dovecot's auth_cache_ttl default): a password change or
user deletion drops the user's entries at once (`forget_user`), so the TTL only
bounds how often a returning user pays the hash. With 60 s, a few hundred users
coming back after a minute queued hashes behind each other and every other RPC
waited for the CPU (issue 13: 300-session LOGIN p99 12 s).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator

import argon2

from store.errors import Internal, Unavailable

ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1
_HASHER = argon2.PasswordHasher(
    time_cost=ARGON2_TIME_COST,
    memory_cost=ARGON2_MEMORY_KIB,
    parallelism=ARGON2_PARALLELISM,
    hash_len=32,
    salt_len=16,
    type=argon2.Type.ID,
)
_ARGON2_PREFIX = "$argon2id$"
_SCRYPT_PREFIX = "scrypt1"
# Verifications hashing at once: about one per core. A burst of first-time logins
# then queues here instead of taking every core (and 19 MiB each) from the other RPCs.
HASH_SLOTS = max(1, min(4, os.cpu_count() or 2))
_HASH_SLOTS = threading.BoundedSemaphore(HASH_SLOTS)
# How long a login waits for a free slot before it is told to come back later: a flood
# of wrong passwords then costs the store bounded CPU and memory, and callers get a
# quick UNAVAILABLE instead of a queue that grows with the flood.
HASH_WAIT_SECONDS = 5.0
_hashes_done = 0  # ever, in this process: tells the memory trimmer a burst happened


def hashes_done() -> int:
    return _hashes_done


def hash_password(password: str) -> str:
    with _hash_slot():
        return _HASHER.hash(password)


def needs_rehash(stored: str) -> bool:
    """True for a hash of an older format or weaker parameters than new hashes get."""
    if not stored.startswith(_ARGON2_PREFIX):
        return True
    try:
        return _HASHER.check_needs_rehash(stored)
    except argon2.exceptions.InvalidHashError:
        return True


def verify_password(password: str, stored: str) -> bool:
    if stored.startswith(_ARGON2_PREFIX):
        with _hash_slot():
            try:
                return _HASHER.verify(stored, password)
            except argon2.exceptions.VerifyMismatchError:
                return False
            except argon2.exceptions.InvalidHashError:
                raise Internal("stored password hash has an unknown format") from None
    return _verify_scrypt(password, stored)


def _verify_scrypt(password: str, stored: str) -> bool:
    try:
        prefix, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        raise Internal("stored password hash has an unknown format") from None
    if prefix != _SCRYPT_PREFIX:
        raise Internal(f"stored password hash has an unknown version {prefix!r}")
    expected = base64.b64decode(digest)
    cost_n, cost_r = int(n), int(r)
    with _hash_slot():
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


@contextlib.contextmanager
def _hash_slot() -> Iterator[None]:
    """One of the HASH_SLOTS, or Unavailable after HASH_WAIT_SECONDS."""
    global _hashes_done
    if not _HASH_SLOTS.acquire(timeout=HASH_WAIT_SECONDS):
        raise Unavailable("too many logins at once; retry in a moment")
    try:
        yield
    finally:
        _hashes_done += 1  # under the slot semaphore, not a lock: a lost count only delays a trim
        _HASH_SLOTS.release()


class _Flight:
    """One verification in progress; concurrent logins with the same credentials wait for it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.error: Exception | None = None


class CredentialCache:
    """Bounded, expiring set of (user, password) pairs verified recently.

    `bound` ties an entry to more than the pair: a process that reads the store's
    database but is not told of password changes (imapd beside the store) passes the
    stored hash it saw, so a changed hash is a miss, not a stale hit."""

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

    def _token(self, user: str, password: str, bound: str = "") -> bytes:
        message = user.encode() + b"\0" + password.encode("utf-8")
        if bound:
            message += b"\0" + bound.encode()
        return hmac.digest(self._key, message, "sha256")

    def check(self, user: str, password: str, *, bound: str = "") -> bool:
        token = self._token(user, password, bound)
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

    def remember(self, user: str, password: str, *, bound: str = "") -> None:
        token = self._token(user, password, bound)
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
