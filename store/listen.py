"""Which addresses the store may listen on: unix sockets and loopback TCP only."""

from __future__ import annotations

import ipaddress
import pathlib
from dataclasses import dataclass


class ListenAddressError(ValueError):
    pass


@dataclass(frozen=True)
class ListenAddress:
    grpc_target: str  # what grpc's add_insecure_port takes
    unix_path: pathlib.Path | None


def parse_listen(text: str) -> ListenAddress:
    """'unix:/abs/path', '127.0.0.1:PORT', 'localhost:PORT' or '[::1]:PORT'."""
    if text.startswith("unix:"):
        path = pathlib.Path(text[len("unix:") :])
        if not path.is_absolute():
            raise ListenAddressError(f"--listen {text!r}: the unix socket path must be absolute")
        return ListenAddress(f"unix:{path}", path)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ListenAddressError(f"--listen {text!r}: expected unix:/path or 127.0.0.1:PORT")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if bare == "localhost":
        return ListenAddress(f"127.0.0.1:{port}", None)
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        raise ListenAddressError(f"--listen {text!r}: {host!r} is not an IP address; use 127.0.0.1") from None
    if not ip.is_loopback:
        raise ListenAddressError(
            f"--listen {text!r}: the store listens only on a unix socket or loopback (127.0.0.0/8, ::1), "
            f"not {ip}; front ends on other hosts reach it through their own node"
        )
    return ListenAddress(text, None)
