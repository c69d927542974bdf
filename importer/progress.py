"""Progress on the terminal and the summary at the end.

On a TTY one line is redrawn in place (counts, bytes, rate, current folder);
otherwise a plain line is printed every `interval` seconds, which reads well
in logs and cron mail.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

_MAX_LISTED = 50


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


@dataclass
class ImportReport:
    label: str = "import"  # what ran: "import", "backup", "restore", "verify", "export"
    folders: int = 0
    messages: int = 0
    bytes: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)  # not imported, with the reason
    broken: list[str] = field(default_factory=list)  # imported as they are, but malformed
    notes: list[str] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)  # source entries skipped unread (symlinks, ...)

    def summary(self, seconds: float) -> str:
        rate = self.messages / seconds if seconds > 0 else 0.0
        byte_rate = self.bytes / seconds if seconds > 0 else 0.0
        lines = [
            f"{self.label} done in {seconds:.1f} s: {self.folders} folders, {self.messages} messages, "
            f"{human_bytes(self.bytes)}, {self.skipped} skipped, {len(self.errors)} errors "
            f"({rate:.1f} messages/s, {human_bytes(byte_rate)}/s)"
        ]
        lines += self.notes
        if self.broken:
            lines.append(f"{len(self.broken)} malformed messages were imported as they are:")
            lines += [f"  {b}" for b in self.broken[:_MAX_LISTED]]
        if self.errors:
            lines.append(f"{len(self.errors)} messages were NOT imported:")
            lines += [f"  {e}" for e in self.errors[:_MAX_LISTED]]
        if self.unread:
            lines.append(f"{len(self.unread)} entries were skipped without reading them:")
            lines += [f"  {u}" for u in self.unread[:_MAX_LISTED]]
        hidden = sum(max(0, len(x) - _MAX_LISTED) for x in (self.broken, self.errors, self.unread))
        if hidden:
            lines.append(f"  ... and {hidden} more")
        return "\n".join(lines)


class Progress:
    def __init__(
        self,
        report: ImportReport,
        out: TextIO | None = None,
        interval: float = 5.0,
        *,
        total_messages: int | None = None,
        total_bytes: int | None = None,
    ) -> None:
        self.report = report
        self.total_messages = total_messages
        self.total_bytes = total_bytes
        self.out = out if out is not None else sys.stderr
        self.tty = self.out.isatty()
        self.interval = 0.2 if self.tty else interval
        self.started = time.monotonic()
        self._last = self.started
        self.folder = ""

    def fraction(self) -> float | None:
        r = self.report
        if self.total_messages:
            return min(1.0, (r.messages + r.skipped + len(r.errors)) / self.total_messages)
        if self.total_bytes:
            return min(1.0, r.bytes / self.total_bytes)
        return None

    def line(self) -> str:
        r = self.report
        elapsed = max(time.monotonic() - self.started, 1e-6)
        done = self.fraction()
        bar = ""
        if done is not None:
            filled = int(done * 30)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {done * 100:5.1f}% "
        of = f"/{self.total_messages}" if self.total_messages else ""
        return (
            f"{bar}{r.messages}{of} messages, {human_bytes(r.bytes)}, {r.skipped} skipped, {len(r.errors)} errors, "
            f"{r.messages / elapsed:.1f} msg/s, {human_bytes(r.bytes / elapsed)}/s  [{self.folder}]"
        )

    def update(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        if self.tty:
            self.out.write("\r\x1b[K" + self.line())
        else:
            self.out.write(self.line() + "\n")
        self.out.flush()

    def finish(self) -> str:
        if self.tty:
            self.out.write("\r\x1b[K")
        summary = self.report.summary(time.monotonic() - self.started)
        self.out.write(summary + "\n")
        self.out.flush()
        return summary
