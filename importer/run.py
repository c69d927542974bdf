"""Running an import: source -> store, with progress and a summary."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from importer.progress import ImportReport, Progress
from importer.source import ImportSource, SourceFolder, SourceMessage
from importer.store_sink import AppendOutcome, StoreSink


def run_import(source: ImportSource, sink: StoreSink, *, out: TextIO | None = None) -> ImportReport:
    """Copy every folder of `source` into the sink's user. Raises ImportFailure if it cannot go on."""
    report = ImportReport()
    total_messages, total_bytes = source.estimate()
    progress = Progress(report, out, total_messages=total_messages, total_bytes=total_bytes)
    sink.check_user()
    try:
        for folder in source.folders():
            progress.folder = folder.name
            sink.ensure_mailbox(folder.name)
            report.folders += 1
            report.skipped += folder.skipped
            if folder.note:
                report.notes.append(folder.note)
            sink.append_all(folder.name, source.messages(folder), _recorder(source, folder, report, progress))
            report.unread += source.take_unread()
            progress.update(force=True)
        report.unread += source.take_unread()
    finally:
        progress.finish()
    return report


def _recorder(
    source: ImportSource, folder: SourceFolder, report: ImportReport, progress: Progress
) -> Callable[[SourceMessage, AppendOutcome], None]:
    def done(message: SourceMessage, outcome: AppendOutcome) -> None:
        where = f"{folder.name}: {message.origin}"
        if outcome.ok:
            report.messages += 1
            report.bytes += len(message.data)
            if message.problems:
                report.broken.append(f"{where}: {'; '.join(message.problems)}")
            source.acknowledged(folder, message)
        else:
            report.errors.append(f"{where}: {outcome.error}")
            source.refused(folder, message)
        progress.update()

    return done


def exit_status(report: ImportReport) -> int:
    return 1 if report.errors else 0


def fail(message: str, err: TextIO | None = None) -> int:
    (err or sys.stderr).write(f"mailha import: {message}\n")
    return 2
