"""Compile imapd's hot, strictly typed modules with mypyc (issue 13).

    .venv/bin/python scripts/build_compiled.py            build, unless the stamp says it is current
    .venv/bin/python scripts/build_compiled.py --clean    remove every compiled module: plain Python again
    .venv/bin/python scripts/build_compiled.py --check    exit 1 if a compiled module is older than its source
    ./scripts/bootstrap.sh                                builds them (MAILHA_COMPILE=0: removes them instead)

Python imports an extension module (`parser.cpython-311-x86_64-linux-gnu.so`)
in place of the `.py` beside it, so the listed modules run compiled once built
and as plain Python when not (never built, or removed with --clean): the
sources stay the one truth, and the build products are untracked. mypyc puts
the code of all of them in one shared library (`imapd/compiled__mypyc.*.so`)
and a small shim beside each source.

A compiled module that is older than its source would still be what Python
imports, so the build writes a stamp (build/mypyc/stamp.json: a hash of each
compiled source, of the build options and of the interpreter and mypy versions);
`--check` (tests/conftest.py runs it) names any source changed since, and a
plain run rebuilds only when the stamp differs.

On by default (issue 13, sixteenth session): compiled, imapd spends 11-15 % less
CPU per NOOP and STORE (command_cost with client and server on one CPU), which
takes the single-session NOOP p50 beside Dovecot's from ~1.59x to ~1.45x where
the client and the server share a CPU (imapd/SERVER.md, "tenth round"), against
a C build in every tree (1.5-2.5 min from scratch on this machine, nothing when
the stamp is current). scripts/bootstrap.sh (thus `make test`, `make demo`) builds them
unless MAILHA_COMPILE=0 is in the environment, which removes any built before
instead: a tree runs what bootstrap was last told.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import platform
import sys
import time
from typing import Final

import mypy.version  # the compiler's own version: a new mypyc is a new build

ROOT: Final = pathlib.Path(__file__).resolve().parent.parent
BUILD: Final = ROOT / "build" / "mypyc"
STAMP: Final = BUILD / "stamp.json"
# The shared library sits in imapd (imapd/compiled__mypyc.*.so): importable wherever imapd is,
# also through the editable install's finder, which maps packages only (the `mailha` command).
GROUP: Final = "imapd.compiled"
OPTIONS: Final = "mypyc opt_level=3 multi_file"  # change it with the mypycify arguments below: a new build

# What runs for every command of a session: the sans-IO protocol core (bytes in,
# typed commands out; typed values back to bytes), the FETCH renderer and the
# session's dispatch and handlers. Each is mypy --strict and monkeypatched by no
# test (a compiled module's functions and constants are bound at compile time).
# imapd/SERVER.md says why these and why not imapd/server.py.
MODULES: Final = (
    # the sans-IO protocol core: one line in, one event out; the state table; reply values to bytes
    "imapd/protocol/parser.py",
    "imapd/protocol/events.py",
    "imapd/protocol/states.py",
    "imapd/protocol/fetch_spec.py",
    "imapd/protocol/values.py",
    # FETCH rendering
    "imapd/message/fetch_render.py",
    "imapd/message/sections.py",
    # the session: dispatch, FETCH/STORE/NOOP, the selected mailbox, output
    "imapd/session/session.py",
    "imapd/session/message_commands.py",
    "imapd/session/auth_commands.py",
    "imapd/session/selected.py",
    "imapd/session/out_parts.py",
)


def _digest(paths: list[pathlib.Path]) -> dict[str, str]:
    out = {str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    out["#options"] = OPTIONS
    out["#python"] = f"{platform.python_implementation()} {sys.version} {sys.executable}"
    out["#mypy"] = mypy.version.__version__
    return out


def sources() -> list[pathlib.Path]:
    return [ROOT / name for name in MODULES]


def built() -> list[pathlib.Path]:
    """Every compiled module of the tree: the shims beside the sources and the shared library."""
    found = sorted(ROOT.glob("*__mypyc.*.so"))  # where an earlier build put the shared library
    for top in {pathlib.Path(name).parts[0] for name in MODULES} | _stamped_tops():
        found += sorted((ROOT / top).rglob("*.so"))
    return found


def _stamped_tops() -> set[str]:
    """Top-level packages of the last build (a module taken off the list keeps no shim behind)."""
    try:
        stamp = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return set()
    return {name.split("/")[0] for name in stamp if not name.startswith("#") and "/" in name}


def stale() -> list[str]:
    """Compiled sources changed since they were compiled (empty when nothing is built)."""
    if not built():
        return []
    try:
        stamp: dict[str, str] = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return ["(compiled modules without a stamp: build/mypyc/stamp.json)"]
    out = []
    for name, digest in stamp.items():
        if name.startswith("#"):
            continue
        path = ROOT / name
        if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            out.append(name)
    return out


def clean() -> None:
    for path in built():
        path.unlink()
    STAMP.unlink(missing_ok=True)


def build() -> None:
    paths = sources()
    wanted = _digest(paths)
    try:
        if json.loads(STAMP.read_text()) == wanted and built():
            return
    except (OSError, ValueError):
        pass
    # Only to build (about a second to import): --check runs before every test session.
    from mypyc.build import mypycify  # noqa: PLC0415
    from setuptools import Distribution  # type: ignore[import-untyped]  # noqa: PLC0415
    from setuptools.command.build_ext import build_ext  # type: ignore[import-untyped]  # noqa: PLC0415

    clean()
    started = time.monotonic()
    print(f"build_compiled: compiling {len(paths)} modules with mypyc", flush=True)
    os.chdir(ROOT)  # mypy reads pyproject.toml's [tool.mypy] (strict) from here
    extensions = mypycify(
        [str(p.relative_to(ROOT)) for p in paths],
        opt_level="3",
        multi_file=True,  # one C file per module: compiled in parallel, each in reasonable memory
        group_name=GROUP,
        target_dir=str(BUILD / "c"),
    )
    for extension in extensions:
        # mypyc writes the group's headers under the group's package (c/imapd/) but includes
        # them by bare name from the per-module C files in c/.
        extension.include_dirs.append(str(BUILD / "c" / GROUP.rpartition(".")[0].replace(".", "/")))
    command = build_ext(Distribution({"ext_modules": extensions}))
    command.inplace = True
    command.build_temp = str(BUILD / "temp")
    command.build_lib = str(BUILD / "lib")
    command.parallel = os.cpu_count() or 1
    command.ensure_finalized()
    command.run()
    STAMP.parent.mkdir(parents=True, exist_ok=True)
    STAMP.write_text(json.dumps(wanted, indent=1, sort_keys=True) + "\n")
    print(f"build_compiled: done in {time.monotonic() - started:.0f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--clean", action="store_true", help="remove every compiled module")
    action.add_argument("--check", action="store_true", help="exit 1 if a compiled module is older than its source")
    action.add_argument(
        "--as-configured", action="store_true", help="build unless MAILHA_COMPILE=0, else --clean (bootstrap.sh)"
    )
    args = parser.parse_args()
    if args.check:
        changed = stale()
        if changed:
            print(
                "compiled modules are older than their sources (Python would import the old code): "
                + ", ".join(changed)
                + "; run `.venv/bin/python scripts/build_compiled.py` (or `--clean`)",
                file=sys.stderr,
            )
            return 1
        return 0
    if args.clean or (args.as_configured and os.environ.get("MAILHA_COMPILE", "1") == "0"):
        clean()
        return 0
    build()
    return 0


if __name__ == "__main__":
    sys.exit(main())
