"""Where a store keeps its LMDB environment in its data directory: the one place the names are
spelled. Imports nothing of the store's engine, so the agent, the consoles and the tools can ask
without loading it."""

from __future__ import annotations

import pathlib


def lmdb_dir(data_dir: pathlib.Path) -> pathlib.Path:
    """The LMDB environment's directory (data.mdb, lock.mdb) of a store on `data_dir`."""
    return data_dir / "lmdb"


def data_file(data_dir: pathlib.Path) -> pathlib.Path:
    """The environment's data file: there once a store has created the environment."""
    return lmdb_dir(data_dir) / "data.mdb"


def lock_file(data_dir: pathlib.Path) -> pathlib.Path:
    """The environment's lock file (its reader table)."""
    return lmdb_dir(data_dir) / "lock.mdb"
