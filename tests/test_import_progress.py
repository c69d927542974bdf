"""Progress output: a redrawn bar on a terminal, plain periodic lines otherwise, and the summary."""

from __future__ import annotations

import io
import re

from importer.progress import ImportReport, Progress, human_bytes


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_tty_bar_is_redrawn_in_place_with_counts_and_rate() -> None:
    report = ImportReport()
    out = FakeTty()
    progress = Progress(report, out, total_messages=10)
    report.messages, report.bytes = 5, 5 * 1024 * 1024
    progress.folder = "INBOX"
    progress.update(force=True)
    text = out.getvalue()
    assert text.startswith("\r\x1b[K[###############...............]  50.0% 5/10 messages, 5.0 MiB")
    assert "msg/s" in text and "[INBOX]" in text and "\n" not in text
    progress.finish()
    # The bar line is cleared before the summary is printed on its own line.
    assert "\r\x1b[Kimport done in " in out.getvalue()
    summary = (
        r"import done in [\d.]+ s: 0 folders, 5 messages, 5\.0 MiB, 0 skipped, 0 errors "
        r"\([\d.]+ messages/s, [\d.]+ \S+/s\)\n$"
    )
    assert re.search(summary, out.getvalue())


def test_plain_lines_when_not_a_terminal_and_summary_lists_problems() -> None:
    report = ImportReport()
    out = io.StringIO()
    progress = Progress(report, out, interval=3600)
    progress.update()  # within the interval: nothing
    assert out.getvalue() == ""
    progress.update(force=True)
    assert out.getvalue().count("\n") == 1 and "\r" not in out.getvalue()
    report.folders, report.messages, report.bytes, report.skipped = 2, 7, 2048, 3
    report.errors.append("INBOX: mbox message 4: size: message too big")
    report.broken.append("INBOX: mbox message 2: no blank line between header and body")
    summary = progress.finish()
    assert "2 folders, 7 messages, 2.0 KiB, 3 skipped, 1 errors" in summary
    assert "1 malformed messages were imported as they are:\n  INBOX: mbox message 2" in summary
    assert "1 messages were NOT imported:\n  INBOX: mbox message 4: size: message too big" in summary


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (512, 1536, 3 * 1024**3)] == ["512 B", "1.5 KiB", "3.0 GiB"]
