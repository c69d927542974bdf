"""The exception root of the backup package."""

from __future__ import annotations


class BackupError(Exception):
    """A backup cannot be made, read, verified or restored; the message says why."""


class Damaged(BackupError):
    """A backup file is missing, truncated or does not match its checksum (named in the message)."""
