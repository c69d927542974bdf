"""The root of the importer's exceptions."""

from __future__ import annotations


class ImportFailure(Exception):
    """The import cannot go on (unreadable source, store refused the session)."""
