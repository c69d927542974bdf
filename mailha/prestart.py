"""A service process started ahead of need: `python -m mailha.prestart NAME`.

`python -m mailha.prestart NAME [READY_FD]`. It imports the service's modules (the bulk of a Python service's start-up
time), then blocks reading ONE line from stdin: the JSON argv of the
`mailha` command it is to become. Only then does it run that command, in
this same process. No fork happens after gRPC is imported, so gRPC's
fork restrictions do not apply. The standby keeps one of these per service
so a takeover does not pay for interpreter start and imports.

If stdin closes without a line (the agent died or dropped it), it exits.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import mailha.cli

# Modules each service imports lazily on its command path; importing them
# here is the whole point. Missing ones are skipped (a service not built).
PRELOAD: dict[str, tuple[str, ...]] = {
    "store": ("grpc", "lmdb", "store.server", "store.servicer", "store.engine"),
    "lmtpd": ("grpc", "trio", "lmtpd.service", "lmtpd.server", "lmtpd.store_gateway"),
    "imapd": ("grpc", "trio", "imapd.server", "imapd.service", "imapd.store_grpc"),
}


def main() -> int:
    name = sys.argv[1] if len(sys.argv) > 1 else ""

    for module in PRELOAD.get(name, ()):
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    parser = mailha.cli.build_parser()  # imports every command module
    if len(sys.argv) > 2:
        # Tell the agent this process is warm (one byte on the inherited pipe).
        ready_fd = int(sys.argv[2])
        try:
            os.write(ready_fd, b"r")
        except BrokenPipeError:
            pass  # the agent already handed us our argv and stopped listening
        os.close(ready_fd)
    line = sys.stdin.readline()
    if not line.strip():
        return 0
    argv = json.loads(line)
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        print("prestart: expected a JSON list of strings", file=sys.stderr)
        return 2
    sys.stdin.close()
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
