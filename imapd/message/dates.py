"""Dates: INTERNALDATE wire form, and the calendar dates SEARCH compares."""

from __future__ import annotations

import datetime
from email.utils import parsedate_tz
from typing import Final

_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MAX_OFFSET_MINUTES: Final = 24 * 60 - 1


def _local(unix_seconds: int, tz_offset_minutes: int) -> datetime.datetime:
    offset = max(-_MAX_OFFSET_MINUTES, min(_MAX_OFFSET_MINUTES, tz_offset_minutes))
    tz = datetime.timezone(datetime.timedelta(minutes=offset))
    try:
        return datetime.datetime.fromtimestamp(unix_seconds, tz)
    except (OverflowError, OSError, ValueError):
        return datetime.datetime.fromtimestamp(0, tz)


def format_internal_date(unix_seconds: int, tz_offset_minutes: int) -> bytes:
    """date-time of RFC 3501: "17-Jul-1996 02:44:25 -0700" (day padded with a space)."""
    moment = _local(unix_seconds, tz_offset_minutes)
    offset = max(-_MAX_OFFSET_MINUTES, min(_MAX_OFFSET_MINUTES, tz_offset_minutes))
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset), 60)
    text = (
        f"{moment.day:2d}-{_MONTHS[moment.month - 1]}-{moment.year:04d} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} {sign}{hours:02d}{minutes:02d}"
    )
    return text.encode("ascii")


def internal_calendar_date(unix_seconds: int, tz_offset_minutes: int) -> datetime.date:
    """The date of the internal date in its own zone (SEARCH ignores time and zone)."""
    return _local(unix_seconds, tz_offset_minutes).date()


def header_calendar_date(value: bytes | None) -> datetime.date | None:
    """The date as written in a Date: header (time and zone disregarded); None if unreadable."""
    if value is None:
        return None
    try:
        parsed = parsedate_tz(value[:256].decode("ascii", "replace"))
        if parsed is None:
            return None
        return datetime.date(parsed[0], parsed[1], parsed[2])
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
