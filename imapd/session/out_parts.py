"""A response queued in parts (bytes, or views of a part's unsent rest), as the
session hands it to its connection: written with writev where the connection can,
so a message body is never joined with the lines around it nor copied again for
each partial write (issue 13)."""

from __future__ import annotations

from typing import Final

JOIN_BELOW: Final = 64 * 1024  # parts smaller than this go out joined where writev cannot be used

Part = bytes | memoryview


def consume(parts: list[Part], sent: int) -> None:
    """Drop the first `sent` bytes of `parts` (a part sent in part stays as a view of its rest)."""
    done = 0
    while done < len(parts) and sent >= len(parts[done]):
        sent -= len(parts[done])
        done += 1
    del parts[:done]
    if sent:
        parts[0] = memoryview(parts[0])[sent:]


def coalesced(parts: list[Part]) -> list[Part]:
    """Small parts joined into one write, big ones (message bodies) handed over as they are."""
    out: list[Part] = []
    pending: list[Part] = []
    for part in parts:
        if len(part) >= JOIN_BELOW:
            if pending:
                out.append(b"".join(pending))
                pending.clear()
            out.append(part)
        else:
            pending.append(part)
    if pending:
        out.append(b"".join(pending))
    return out
