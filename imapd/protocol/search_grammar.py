"""SEARCH key syntax (RFC 3501 search-key, RFC 7162 MODSEQ, RFC 5032 WITHIN) into search_spec values."""

from __future__ import annotations

import re
from typing import Final

from imapd.protocol import search_spec as ss
from imapd.protocol.errors import ParseError
from imapd.protocol.reader import Reader
from imapd.protocol.sequence import SequenceSet

# Nesting deeper than this is abuse, not a search (and would exhaust the Python stack).
_MAX_DEPTH: Final = 64
_OBJECT_ID: Final = re.compile(rb"[A-Za-z0-9_-]{1,255}")
_SEQ_START: Final = frozenset(b"0123456789*$")
_DIGITS: Final = frozenset(b"0123456789")


def search_program(reader: Reader, charset: str) -> ss.SearchProgram:
    """key *(SP key) to the end of the command, under `charset`."""
    if charset.upper() not in ss.SUPPORTED_CHARSETS:
        raise ss.UnsupportedCharset(charset)
    keys = [_key(reader, charset, 0)]
    while reader.maybe_sp():
        keys.append(_key(reader, charset, 0))
    reader.end()
    key = keys[0] if len(keys) == 1 else ss.AndKey(tuple(keys))
    return ss.SearchProgram(key, charset.upper())


def _string(reader: Reader, charset: str) -> str:
    return ss.decode_search_string(reader.astring(), charset)


def _key(reader: Reader, charset: str, depth: int) -> ss.SearchKey:
    if depth > _MAX_DEPTH:
        raise ParseError("search keys nested too deeply")
    first = reader.peek()
    if first == 0x28:  # "("
        reader.expect(0x28)
        keys = [_key(reader, charset, depth + 1)]
        while reader.maybe_sp():
            keys.append(_key(reader, charset, depth + 1))
        reader.expect(0x29)
        return keys[0] if len(keys) == 1 else ss.AndKey(tuple(keys))
    if first in _SEQ_START:
        return ss.SequenceKey(SequenceSet.parse(reader.sequence_set()))
    name = reader.keyword()
    simple = ss.simple_key(name)
    if simple is not None:
        return simple
    if name in ss.ADDRESS_KEYS:
        reader.sp()
        return ss.HeaderKey(ss.ADDRESS_KEYS[name], _string(reader, charset))
    if name in ss.DATE_KEYS:
        reader.sp()
        field, relation = ss.DATE_KEYS[name]
        return ss.DateKey(field, relation, reader.date())
    if name in ("EMAILID", "THREADID"):
        reader.sp()
        value = reader.read_pattern(_OBJECT_ID, "an object id")  # RFC 8474: 1*255(ALPHA / DIGIT / "_" / "-")
        return ss.ObjectIdKey(ss.ObjectIdKind(name), value.decode("ascii"))
    if name == "HEADER":
        reader.sp()
        field_name = reader.astring()
        if not field_name.isascii():
            raise ParseError("header field names are ASCII")
        reader.sp()
        return ss.HeaderKey(field_name.decode("ascii"), _string(reader, charset))
    if name == "BODY":
        reader.sp()
        return ss.BodyKey(_string(reader, charset))
    if name == "TEXT":
        reader.sp()
        return ss.TextKey(_string(reader, charset))
    if name in ("KEYWORD", "UNKEYWORD"):
        reader.sp()
        return ss.keyword_key(reader.flag(), present=name == "KEYWORD")
    if name in ("YOUNGER", "OLDER"):
        reader.sp()
        return ss.AgeKey(ss.AgeRelation(name), reader.nz_number())
    if name in ("LARGER", "SMALLER"):
        reader.sp()
        return ss.SizeKey(ss.SizeRelation(name), reader.number())
    if name == "UID":
        reader.sp()
        return ss.SequenceKey(SequenceSet.parse(reader.sequence_set()), uid=True)
    if name == "NOT":
        reader.sp()
        return ss.NotKey(_key(reader, charset, depth + 1))
    if name == "OR":
        reader.sp()
        left = _key(reader, charset, depth + 1)
        reader.sp()
        return ss.OrKey(left, _key(reader, charset, depth + 1))
    if name == "MODSEQ":
        reader.sp()
        entry_name: str | None = None
        entry_type: str | None = None
        if reader.peek() not in _DIGITS:
            entry_name = reader.astring_str()
            reader.sp()
            entry_type = reader.keyword().lower()
            if entry_type not in ("priv", "shared", "all"):
                raise ParseError("invalid MODSEQ entry type")
            reader.sp()
        return ss.ModSeqKey(reader.number64(), entry_name, entry_type)
    raise ParseError(f"unknown search key {name[:30]}")
