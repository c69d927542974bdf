"""The root of lmtpd's exceptions."""

from __future__ import annotations


class LmtpdError(Exception):
    """Base of every error raised by lmtpd outside the sans-IO core."""


class StoreConnectionLost(LmtpdError):
    """The append pipeline to the store broke; its in-flight deliveries are unknown."""
