"""Secrets kept in files of their own (never in cluster.yaml, never in the code).

`ensure_secret` makes a random one (0600, in a 0700 directory) when there is
none; `read_secret` refuses a missing, empty or group/world-readable file with
a sentence that says what to do.
"""

from __future__ import annotations

import os
import pathlib
import secrets


class SecretFileError(ValueError):
    pass


def ensure_secret(path: pathlib.Path) -> bool:
    """Write a new random secret to `path` unless one is there; True if this call made it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    return True


def read_secret(path: pathlib.Path, what: str) -> str:
    """The secret in `path` (first line, stripped)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise SecretFileError(
            f"{what}: no secret file {path} (`mailha cluster up` generates one; "
            "or write one line of random text there, mode 0600)"
        ) from None
    except OSError as exc:
        raise SecretFileError(f"{what}: cannot read the secret file {path}: {exc.strerror}") from None
    with os.fdopen(fd) as f:
        if os.fstat(f.fileno()).st_mode & 0o077:
            raise SecretFileError(f"{what}: secret file {path} is readable by others; chmod 600 it")
        value = f.readline().strip()
    if not value:
        raise SecretFileError(f"{what}: secret file {path} is empty")
    return value
