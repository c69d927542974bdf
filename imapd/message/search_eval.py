"""SEARCH evaluation: a key tree against one message view.

String keys match case-insensitively (Unicode casefold) on DECODED text:
RFC 2047 words in headers, quoted-printable/base64 and the part's charset in
bodies. Dates ignore time and zone: BEFORE/ON/SINCE use the internal date
in its own zone, SENT* the date written in the Date: header (a message
without a readable Date: falls back to its internal date, as Dovecot does).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import assert_never

from imapd.message import object_ids
from imapd.message.dates import header_calendar_date, internal_calendar_date
from imapd.protocol.search_spec import (
    AgeKey,
    AgeRelation,
    AllKey,
    AndKey,
    BodyKey,
    DateField,
    DateKey,
    DateRelation,
    FlagKey,
    HeaderKey,
    ModSeqKey,
    NotKey,
    ObjectIdKey,
    ObjectIdKind,
    OrKey,
    SearchKey,
    SequenceKey,
    SizeKey,
    SizeRelation,
    TextKey,
)
from imapd.protocol.sequence import SequenceSet
from mailparse import search_text
from mailparse.errors import MissingMessageData
from mailparse.headers import first_value
from mailparse.search_fields import search_values
from mailparse.view import MessageView, ParsedMessage


@dataclass(frozen=True, slots=True)
class SearchContext:
    """What "*" and "$" mean in this mailbox, for sequence and UID sets."""

    largest_seq: int
    largest_uid: int
    saved_uids: frozenset[int] = frozenset()  # SEARCHRES "$"
    now: int = field(default_factory=lambda: int(time.time()))  # WITHIN (RFC 5032) counts back from here


class _Message:
    """One message under evaluation: decoded text is computed once, on first need."""

    __slots__ = ("_body_text", "_header_text", "_mime_text", "parsed", "seq")

    def __init__(self, view: MessageView, seq: int) -> None:
        self.parsed = ParsedMessage(view)
        self.seq = seq
        self._body_text: str | None = None
        self._header_text: str | None = None
        self._mime_text: str | None = None

    def header_values(self, name: bytes) -> Iterator[str]:
        for f in self.parsed.fields():
            if f.name == name:
                yield from search_values(f.name, f.value)

    def header_text(self) -> str:
        if self._header_text is None:
            self._header_text = search_text.header_text(self.parsed)
        return self._header_text

    def mime_header_text(self) -> str:
        if self._mime_text is None:
            self._mime_text = search_text.mime_header_text(self.parsed)
        return self._mime_text

    def body_text(self) -> str:
        if self._body_text is None:
            self._body_text = search_text.body_text(self.parsed)
        return self._body_text


def _compare_date(value: datetime.date, relation: DateRelation, wanted: datetime.date) -> bool:
    if relation is DateRelation.BEFORE:
        return value < wanted
    if relation is DateRelation.ON:
        return value == wanted
    return value >= wanted


def _has_flag(view: MessageView, flag: str) -> bool:
    if flag.lower() == "\\recent":
        return view.recent
    wanted = flag.lower()
    return any(f.lower() == wanted for f in view.flags)


class SearchEvaluator:
    """Evaluates one key tree for many messages; needles are casefolded once."""

    __slots__ = ("context", "key")

    def __init__(self, key: SearchKey, context: SearchContext) -> None:
        self.key = key
        self.context = context

    def matches(self, view: MessageView, seq: int) -> bool:
        """Raises MissingMessageData when the key needs bytes the view lacks (see search_needs)."""
        return self._eval(self.key, _Message(view, seq))

    def _eval(self, key: SearchKey, msg: _Message) -> bool:
        view = msg.parsed.view
        if isinstance(key, AndKey):
            return all(self._eval(k, msg) for k in key.keys)
        if isinstance(key, OrKey):
            return self._eval(key.left, msg) or self._eval(key.right, msg)
        if isinstance(key, NotKey):
            return not self._eval(key.key, msg)
        if isinstance(key, AllKey):
            return True
        if isinstance(key, FlagKey):
            return _has_flag(view, key.flag) == key.present
        if isinstance(key, SizeKey):
            if key.relation is SizeRelation.LARGER:
                return view.size > key.size
            return view.size < key.size
        if isinstance(key, ModSeqKey):
            return view.modseq >= key.modseq
        if isinstance(key, SequenceKey):
            return self._in_set(key, view.uid, msg.seq)
        if isinstance(key, DateKey):
            return _compare_date(self._date_of(key.field, msg), key.relation, key.date)
        if isinstance(key, AgeKey):
            # As Dovecot: YOUNGER n is "since now - n", OLDER n is "at or before now - n".
            if key.relation is AgeRelation.YOUNGER:
                return view.internal_date >= self.context.now - key.seconds
            return view.internal_date <= self.context.now - key.seconds
        if isinstance(key, ObjectIdKey):
            if key.kind is ObjectIdKind.THREADID:
                return False  # no thread ids (imapd/message/object_ids.py)
            if view.email_id is None:
                raise MissingMessageData(f"uid {view.uid}: the EMAILID was not fetched")
            return object_ids.email_id(view.email_id) == key.value
        if isinstance(key, HeaderKey):
            needle = key.value.casefold()
            name = key.field.lower().encode("ascii", "replace")
            return any(needle in value for value in msg.header_values(name))
        if isinstance(key, BodyKey):
            return key.value.casefold() in msg.body_text()
        if isinstance(key, TextKey):
            needle = key.value.casefold()
            return needle in msg.header_text() or needle in msg.body_text() or needle in msg.mime_header_text()
        assert_never(key)

    def _in_set(self, key: SequenceKey, uid: int, seq: int) -> bool:
        matcher = key.matcher
        if isinstance(matcher, SequenceSet) and matcher.saved:
            # "$" names messages, not numbers: the saved result holds UIDs (RFC 5182).
            return uid in self.context.saved_uids
        if key.uid:
            return matcher.contains(uid, self.context.largest_uid)
        return matcher.contains(seq, self.context.largest_seq)

    @staticmethod
    def _date_of(field: DateField, msg: _Message) -> datetime.date:
        view = msg.parsed.view
        if field is DateField.SENT:
            sent = header_calendar_date(first_value(msg.parsed.fields(), b"date"))
            if sent is not None:
                return sent
        if field is DateField.SAVED:
            if view.save_date is None:
                raise MissingMessageData(f"uid {view.uid}: the save date was not fetched")
            return internal_calendar_date(view.save_date, 0)
        return internal_calendar_date(view.internal_date, view.tz_offset_minutes)


def search(
    key: SearchKey, messages: list[tuple[int, MessageView]], context: SearchContext
) -> list[tuple[int, MessageView]]:
    """The (seq, view) pairs that match, in the given order."""
    evaluator = SearchEvaluator(key, context)
    return [(seq, view) for seq, view in messages if evaluator.matches(view, seq)]
