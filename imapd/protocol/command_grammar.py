"""The command grammar: a framed command (segments + literals) to (tag, Command).

One function per command name, chosen from a dict (no getattr dispatch).
Every function starts right after the command name and must consume the
whole command. Errors raise ParseError; the parser turns them into events.
"""

from __future__ import annotations

import binascii
import datetime
import functools
import re
from collections.abc import Callable
from typing import Final

from imapd.protocol import commands as c
from imapd.protocol.errors import ParseError
from imapd.protocol.fetch_grammar import fetch_attributes
from imapd.protocol.fetch_spec import FetchAttribute
from imapd.protocol.reader import Reader
from imapd.protocol.search_grammar import search_program
from imapd.protocol.search_spec import SearchProgram, UnsupportedCharset
from imapd.protocol.sequence import SequenceSet
from mailparse.sort_spec import SortCriterion, ThreadAlgorithm

# tag: 1*<any ASTRING-CHAR except "+">
TAG: Final = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\+]+")
_MAX_TAG: Final = 64
_STATUS_ITEMS: Final = {item.value: item for item in c.StatusItem}
_LIST_SELECTION: Final = {opt.value: opt for opt in c.ListSelection}
_LIST_RETURN: Final = {opt.value: opt for opt in c.ListReturn}
_SEARCH_RETURN: Final = {opt.value: opt for opt in c.SearchReturn}
_SORT_CRITERIA: Final = {crit.value: crit for crit in SortCriterion}
_THREAD_ALGORITHMS: Final = {alg.value: alg for alg in ThreadAlgorithm}
_BASE64: Final = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


class CommandParseError(ParseError):
    """A ParseError that knows the tag (None when not even the tag was readable)."""

    def __init__(self, tag: str | None, message: str, *, charset: bool = False, forgets_saved: bool = False) -> None:
        super().__init__(message)
        self.tag = tag
        self.message = message
        # True for an unknown SEARCH CHARSET: answered NO [BADCHARSET], not BAD.
        self.bad_charset = charset
        # That NO answers a RETURN (SAVE): the saved result becomes empty (RFC 5182 2.1).
        self.forgets_saved = forgets_saved


def split_tag(line: bytes) -> str | None:
    """The tag at the start of a line, if it is a valid one followed by a space."""
    m = TAG.match(line)
    if m is None:
        return None
    end = m.end()
    if end > _MAX_TAG or line[end : end + 1] != b" ":
        return None
    return line[:end].decode("ascii")


def parse_command(
    segments: list[bytes],
    literals: list[bytes] | None = None,
    binary: list[bool] | None = None,
    *,
    utf8_names: bool = False,
    tag: str | None = None,
) -> tuple[str, c.Command]:
    """Parse one complete command; raises CommandParseError.

    `tag`: what `split_tag` already found at the start of the first segment (the
    parser checks it before reading a command), so it is not split again."""
    first = segments[0]
    if tag is None:
        tag = split_tag(first)
    if tag is None:
        raise CommandParseError(None, "missing or invalid tag")
    try:
        if not literals and cacheable(first, len(tag)):
            return tag, _parse_line_cached(first[len(tag) + 1 :], utf8_names)
        reader = Reader(segments, literals, binary, utf8_names=utf8_names)
        reader.read_pattern(TAG, "a tag")
        reader.sp()
        return tag, _command(reader)
    except UnsupportedCharset as exc:
        raise CommandParseError(
            tag, f"unsupported charset {str(exc)[:30]}", charset=True, forgets_saved=exc.saving
        ) from None
    except ParseError as exc:
        raise CommandParseError(tag, str(exc)) from None


def _command(reader: Reader) -> c.Command:
    name = reader.keyword()
    handler = _COMMANDS.get(name)
    if handler is None:
        raise ParseError(f"unknown command {name[:30]}")
    command = handler(reader)
    reader.end()
    return command


# Clients repeat the same few command lines ("UID FETCH 1:* (FLAGS)", "NOOP",
# "SELECT INBOX") and commands are immutable, so one-line commands are
# parsed once per distinct text. Lines with secrets are never kept, and
# only short lines are, so the cache stays under 1024 * 256 bytes of keys.
_NOT_CACHED: Final = frozenset({b"LOGIN", b"AUTHE"})
_MAX_CACHED: Final = 256


def cacheable(line: bytes, tag_length: int) -> bool:
    """A whole one-line command whose parse may be kept and reused: short, no secrets."""
    return len(line) <= _MAX_CACHED and line[tag_length + 1 : tag_length + 6].upper() not in _NOT_CACHED


@functools.lru_cache(maxsize=1024)
def _parse_line_cached(rest: bytes, utf8_names: bool) -> c.Command:
    return _command(Reader([rest], utf8_names=utf8_names))


# --- commands without arguments ---------------------------------------------


def _no_args(command: c.Command) -> Callable[[Reader], c.Command]:
    def parse(reader: Reader) -> c.Command:
        return command

    return parse


# --- any / not authenticated -------------------------------------------------


def _authenticate(r: Reader) -> c.Command:
    r.sp()
    mechanism = r.keyword()
    initial: bytes | None = None
    if r.maybe_sp():
        raw = r.atom() if r.peek() != 0x3D else b""
        if raw == b"":
            r.expect(0x3D)  # "=" is the empty initial response
            initial = b""
        else:
            initial = decode_base64(raw)
    return c.Authenticate(mechanism, initial)


def decode_base64(raw: bytes) -> bytes:
    """Strict base64 (SASL responses); raises ParseError."""
    if len(raw) % 4 or _BASE64.fullmatch(raw) is None:
        raise ParseError("invalid base64")
    try:
        return binascii.a2b_base64(raw, strict_mode=True)
    except binascii.Error:
        raise ParseError("invalid base64") from None


def _login(r: Reader) -> c.Command:
    r.sp()
    user = r.astring_str()
    r.sp()
    return c.Login(user, r.astring_str())


def _id(r: Reader) -> c.Command:
    r.sp()
    if r.peek_word() == b"NIL":
        r.atom()
        return c.Id(None)
    r.expect(0x28)
    params: list[tuple[str, str | None]] = []
    if not r.maybe(0x29):
        while True:
            key = r.utf8(r.string())
            r.sp()
            value = r.nstring()
            params.append((key, None if value is None else r.utf8(value)))
            if len(params) > 30:
                raise ParseError("too many ID parameters")
            if not r.maybe_sp():
                break
        r.expect(0x29)
    return c.Id(tuple(params))


def _compress(r: Reader) -> c.Command:
    r.sp()
    return c.Compress(r.keyword())


# --- authenticated ----------------------------------------------------------


def _select(read_only: bool) -> Callable[[Reader], c.Command]:
    def parse(r: Reader) -> c.Command:
        r.sp()
        mailbox = r.mailbox()
        condstore = False
        qresync: c.QResyncParams | None = None
        if r.maybe_sp():
            r.expect(0x28)
            while True:
                name = r.keyword()
                if name == "CONDSTORE":
                    condstore = True
                elif name == "QRESYNC":
                    r.sp()
                    qresync = _qresync(r)
                else:
                    raise ParseError(f"unknown select parameter {name[:30]}")
                if not r.maybe_sp():
                    break
            r.expect(0x29)
        return c.Select(mailbox, read_only, condstore, qresync)

    return parse


def _qresync(r: Reader) -> c.QResyncParams:
    r.expect(0x28)
    uidvalidity = r.nz_number()
    r.sp()
    modseq = r.number64()
    known_uids: SequenceSet | None = None
    known_seq: SequenceSet | None = None
    known_seq_uids: SequenceSet | None = None
    if r.maybe_sp():
        if r.peek() != 0x28:
            known_uids = SequenceSet.parse(r.sequence_set())
            if not r.maybe_sp():
                r.expect(0x29)
                return c.QResyncParams(uidvalidity, modseq, known_uids)
        r.expect(0x28)
        known_seq = SequenceSet.parse(r.sequence_set())
        r.sp()
        known_seq_uids = SequenceSet.parse(r.sequence_set())
        r.expect(0x29)
    r.expect(0x29)
    return c.QResyncParams(uidvalidity, modseq, known_uids, known_seq, known_seq_uids)


def _create(r: Reader) -> c.Command:
    r.sp()
    mailbox = r.mailbox()
    special: tuple[str, ...] = ()
    if r.maybe_sp():
        r.expect(0x28)
        if r.keyword() != "USE":
            raise ParseError("unknown CREATE parameter")
        r.sp()
        special = r.flag_list()
        r.expect(0x29)
    return c.Create(mailbox, special)


def _one_mailbox(cls: type[c.Delete | c.Subscribe | c.Unsubscribe | c.GetQuotaRoot]) -> Callable[[Reader], c.Command]:
    def parse(r: Reader) -> c.Command:
        r.sp()
        return cls(r.mailbox())

    return parse


def _rename(r: Reader) -> c.Command:
    r.sp()
    old = r.mailbox()
    r.sp()
    return c.Rename(old, r.mailbox())


def _list(r: Reader) -> c.Command:
    r.sp()
    extended = False
    selection: set[c.ListSelection] = set()
    if r.maybe(0x28):
        extended = True
        if not r.maybe(0x29):
            while True:
                opt = _LIST_SELECTION.get(r.keyword())
                if opt is None:
                    raise ParseError("unknown LIST selection option")
                selection.add(opt)
                if not r.maybe_sp():
                    break
            r.expect(0x29)
        r.sp()
    reference = r.list_mailbox()
    r.sp()
    if r.maybe(0x28):
        extended = True
        patterns = [r.list_mailbox()]
        while r.maybe_sp():
            patterns.append(r.list_mailbox())
        r.expect(0x29)
    else:
        patterns = [r.list_mailbox()]
    returns: set[c.ListReturn] = set()
    status: tuple[c.StatusItem, ...] | None = None
    if r.maybe_sp():
        if r.keyword() != "RETURN":
            raise ParseError("expected RETURN")
        extended = True
        r.sp()
        r.expect(0x28)
        if not r.maybe(0x29):
            while True:
                name = r.keyword()
                if name == "STATUS":
                    r.sp()
                    status = _status_items(r)
                else:
                    ret = _LIST_RETURN.get(name)
                    if ret is None:
                        raise ParseError("unknown LIST return option")
                    returns.add(ret)
                if not r.maybe_sp():
                    break
            r.expect(0x29)
    # REMOTE selects no subset RECURSIVEMATCH could modify (RFC 5258 section 3).
    if c.ListSelection.RECURSIVEMATCH in selection and selection <= {
        c.ListSelection.RECURSIVEMATCH,
        c.ListSelection.REMOTE,
    }:
        raise ParseError("RECURSIVEMATCH needs another selection option")  # RFC 5258 section 3
    return c.List(reference, tuple(patterns), frozenset(selection), frozenset(returns), status, extended)


def _lsub(r: Reader) -> c.Command:
    r.sp()
    reference = r.list_mailbox()
    r.sp()
    return c.Lsub(reference, r.list_mailbox())


def _status_items(r: Reader) -> tuple[c.StatusItem, ...]:
    r.expect(0x28)
    items: list[c.StatusItem] = []
    while True:
        item = _STATUS_ITEMS.get(r.keyword())
        if item is None:
            raise ParseError("unknown status item")
        items.append(item)
        if not r.maybe_sp():
            break
    r.expect(0x29)
    return tuple(items)


def _status(r: Reader) -> c.Command:
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    return c.Status(mailbox, _status_items(r))


def append_message_head(r: Reader) -> tuple[tuple[str, ...], datetime.datetime | None]:
    """[flag-list SP] [date-time SP] before a message literal (after the SP that precedes them)."""
    flags: tuple[str, ...] = ()
    date: datetime.datetime | None = None
    if r.peek() == 0x28:
        flags = r.flag_list()
        r.sp()
    if r.peek() == 0x22:
        date = r.date_time()
        r.sp()
    return flags, date


def _append(r: Reader) -> c.Command:
    r.sp()
    mailbox = r.mailbox()
    messages: list[c.AppendMessage] = []
    while r.maybe_sp():
        flags, date = append_message_head(r)
        if r.peek_word() == b"CATENATE":
            messages.append(c.AppendMessage(flags, date, b"", catenate=_catenate_parts(r)))
            continue
        if r.peek_word() == b"UTF8":  # UTF8 "(" literal8 ")" (RFC 6855 4)
            r.atom()
            r.sp()
            r.expect(0x28)
            if not r.literal_is_binary():
                raise ParseError("UTF8 APPEND data is a literal8 (~{n})")
            messages.append(c.AppendMessage(flags, date, r.literal(binary_ok=True), True))
            r.expect(0x29)
            continue
        binary = r.literal_is_binary()
        messages.append(c.AppendMessage(flags, date, r.literal(binary_ok=True), binary))
    if not messages:
        raise ParseError("APPEND needs a message literal")
    return c.Append(mailbox, tuple(messages))


# Parts of one CATENATE; more is abuse (each URL costs a store fetch).
MAX_CATENATE_PARTS: Final = 64


def _catenate_parts(r: Reader) -> tuple[c.CatenatePart, ...]:
    """CATENATE SP "(" cat-part *(SP cat-part) ")" (RFC 4469 5), cat-part = TEXT SP literal / URL SP astring."""
    r.atom()
    r.sp()
    r.expect(0x28)
    parts: list[c.CatenatePart] = []
    while True:
        kind = r.keyword()
        r.sp()
        if kind == "TEXT":
            parts.append(c.CatenateText(r.literal(binary_ok=True)))  # literal8 too, with BINARY (RFC 4469 6)
        elif kind == "URL":
            parts.append(c.CatenateUrl(r.astring().decode("utf-8", "replace")))
        else:
            raise ParseError("CATENATE parts are TEXT or URL")
        if len(parts) > MAX_CATENATE_PARTS:
            raise ParseError("too many CATENATE parts")
        if not r.maybe_sp():
            break
    r.expect(0x29)
    return tuple(parts)


def _enable(r: Reader) -> c.Command:
    caps: list[str] = []
    while r.maybe_sp():
        caps.append(r.keyword())
    if not caps:
        raise ParseError("ENABLE needs a capability")
    return c.Enable(tuple(caps))


_NOTIFY_FILTERS: Final = {f.value: f for f in c.NotifyFilter}
# Bounds on what a client can make a session track (RFC 5465 sets none).
MAX_NOTIFY_GROUPS: Final = 32
MAX_NOTIFY_MAILBOXES: Final = 1000
_MAX_NOTIFY_EVENTS: Final = 32


def _notify(r: Reader) -> c.Command:
    r.sp()
    word = r.keyword()
    if word == "NONE":
        return c.Notify(None)
    if word != "SET":
        raise ParseError("NOTIFY SET or NOTIFY NONE")
    r.sp()
    status = False
    if not r.maybe(0x28):
        if r.keyword() != "STATUS":
            raise ParseError("NOTIFY SET [STATUS] (event-group) ...")
        status = True
        r.sp()
        r.expect(0x28)
    groups = [_notify_group(r)]
    total = len(groups[0].mailboxes)
    while r.maybe_sp():
        r.expect(0x28)
        groups.append(_notify_group(r))
        total += len(groups[-1].mailboxes)
        if len(groups) > MAX_NOTIFY_GROUPS or total > MAX_NOTIFY_MAILBOXES:
            raise ParseError(f"NOTIFY: at most {MAX_NOTIFY_GROUPS} groups and {MAX_NOTIFY_MAILBOXES} mailboxes")
    return c.Notify(tuple(groups), status)


def _notify_group(r: Reader) -> c.NotifyGroup:
    """The rest of "(" filter-mailboxes SP events ")"."""
    name = r.keyword()
    flt = _NOTIFY_FILTERS.get(name)
    if flt is None:
        raise ParseError("unknown NOTIFY mailbox filter")
    mailboxes: list[str] = []
    if flt in (c.NotifyFilter.SUBTREE, c.NotifyFilter.MAILBOXES):
        r.sp()
        if r.maybe(0x28):
            mailboxes.append(r.mailbox())
            while r.maybe_sp():
                mailboxes.append(r.mailbox())
                if len(mailboxes) > MAX_NOTIFY_MAILBOXES:
                    raise ParseError(f"NOTIFY: at most {MAX_NOTIFY_MAILBOXES} mailboxes")
            r.expect(0x29)
        else:
            mailboxes.append(r.mailbox())
    r.sp()
    events: list[str] = []
    fetch: tuple[FetchAttribute, ...] = ()
    if r.maybe(0x28):
        while True:
            event = r.keyword()
            events.append(event)
            if len(events) > _MAX_NOTIFY_EVENTS:
                raise ParseError("NOTIFY: too many events")
            if not r.maybe_sp():
                break
            if event == "MESSAGENEW" and r.peek() == 0x28:
                fetch = fetch_attributes(r)
                if not r.maybe_sp():
                    break
        r.expect(0x29)
    elif r.keyword() != "NONE":
        raise ParseError("NOTIFY events are a list or NONE")
    r.expect(0x29)
    return c.NotifyGroup(flt, tuple(mailboxes), tuple(events), fetch)


def _getquota(r: Reader) -> c.Command:
    r.sp()
    return c.GetQuota(r.astring_str())


_METADATA_DEPTHS: Final = {"0": 0, "1": 1, "INFINITY": c.METADATA_DEPTH_INFINITY}
_MAX_METADATA_ENTRIES: Final = 500  # as the store's bound (store/metadata.py)


def _getmetadata(r: Reader) -> c.Command:
    r.sp()
    max_size: int | None = None
    depth = 0
    if r.maybe(0x28):
        while True:
            option = r.keyword()
            r.sp()
            if option == "MAXSIZE":
                max_size = r.number()
            elif option == "DEPTH":
                word = r.keyword()
                if word not in _METADATA_DEPTHS:
                    raise ParseError("DEPTH is 0, 1 or infinity")
                depth = _METADATA_DEPTHS[word]
            else:
                raise ParseError("unknown GETMETADATA option")
            if not r.maybe_sp():
                break
        r.expect(0x29)
        r.sp()
    mailbox = r.mailbox_or_server()
    r.sp()
    entries = [r.astring_str()] if not r.maybe(0x28) else _metadata_names(r)
    return c.GetMetadata(mailbox, tuple(entries), max_size, depth)


def _metadata_names(r: Reader) -> list[str]:
    names = [r.astring_str()]
    while r.maybe_sp():
        names.append(r.astring_str())
        if len(names) > _MAX_METADATA_ENTRIES:
            raise ParseError("too many metadata entries")
    r.expect(0x29)
    return names


def _setmetadata(r: Reader) -> c.Command:
    r.sp()
    mailbox = r.mailbox_or_server()
    r.sp()
    r.expect(0x28)
    pairs: list[tuple[str, bytes | None]] = []
    while True:
        name = r.astring_str()
        r.sp()
        value = r.literal(binary_ok=True) if r.literal_is_binary() else r.nstring()  # value = nstring / literal8
        pairs.append((name, value))
        if len(pairs) > _MAX_METADATA_ENTRIES:
            raise ParseError("too many metadata entries")
        if not r.maybe_sp():
            break
    r.expect(0x29)
    return c.SetMetadata(mailbox, tuple(pairs))


def _setquota(r: Reader) -> c.Command:
    r.sp()
    root = r.astring_str()
    r.sp()
    r.expect(0x28)
    limits: list[tuple[str, int]] = []
    if not r.maybe(0x29):
        while True:
            resource = r.keyword()
            r.sp()
            limits.append((resource, r.number64()))
            if not r.maybe_sp():
                break
        r.expect(0x29)
    return c.SetQuota(root, tuple(limits))


# --- selected ----------------------------------------------------------------


def _search(uid: bool) -> Callable[[Reader], c.Command]:
    def parse(r: Reader) -> c.Command:
        r.sp()
        returns, partial = _return_options(r)
        charset = "US-ASCII"
        given = r.peek_word() == b"CHARSET"
        if given:
            r.atom()
            r.sp()
            charset = r.astring_str()
            r.sp()
        return c.Search(_program(r, charset, returns), uid, returns, partial, given)

    return parse


def _program(r: Reader, charset: str, returns: frozenset[c.SearchReturn] | None) -> SearchProgram:
    try:
        return search_program(r, charset)
    except UnsupportedCharset as exc:
        raise UnsupportedCharset(str(exc), saving=returns is not None and c.SearchReturn.SAVE in returns) from None


def _return_options(r: Reader) -> tuple[frozenset[c.SearchReturn] | None, tuple[int, int] | None]:
    """[RETURN (opts) SP] of SEARCH (RFC 4731, 5267) and SORT (RFC 5267): (options, PARTIAL range);
    options None when absent."""
    if r.peek_word() != b"RETURN":
        return None, None
    r.atom()
    r.sp()
    r.expect(0x28)
    opts: set[c.SearchReturn] = set()
    partial: tuple[int, int] | None = None
    if not r.maybe(0x29):
        while True:
            opt = _SEARCH_RETURN.get(r.keyword())
            if opt is None:
                raise ParseError("unknown RETURN option")
            if opt is c.SearchReturn.PARTIAL:
                if partial is not None:
                    raise ParseError("PARTIAL can be used only once")
                r.sp()
                partial = _partial_range(r)
            opts.add(opt)
            if not r.maybe_sp():
                break
        r.expect(0x29)
    r.sp()
    if partial is not None and c.SearchReturn.ALL in opts:
        raise ParseError("PARTIAL conflicts with ALL")  # RFC 5267 4.4
    # RETURN () means ALL (RFC 4731 section 3.1), so does a lone CONTEXT hint; SAVE alone saves without output.
    if not opts - {c.SearchReturn.CONTEXT}:
        opts.add(c.SearchReturn.ALL)
    return frozenset(opts), partial


def _partial_range(r: Reader) -> tuple[int, int]:
    """partial-range = nz-number ":" nz-number (RFC 5267 5); 500:400 is 400:500."""
    first = r.nz_number()
    r.expect(0x3A)
    second = r.nz_number()
    return (first, second) if first <= second else (second, first)


def _cancel_update(r: Reader) -> c.Command:
    tags: list[str] = []
    while r.maybe_sp():
        tags.append(r.quoted().decode("utf-8", "replace"))
        if len(tags) > 100:
            raise ParseError("too many tags")
    if not tags:
        raise ParseError("CANCELUPDATE needs at least one tag")
    return c.CancelUpdate(tuple(tags))


def _sort(uid: bool) -> Callable[[Reader], c.Command]:
    def parse(r: Reader) -> c.Command:
        r.sp()
        returns, partial = _return_options(r)
        r.expect(0x28)
        criteria: list[tuple[SortCriterion, bool]] = []
        while True:
            name = r.keyword()
            reverse = name == "REVERSE"
            if reverse:
                r.sp()
                name = r.keyword()
            criterion = _SORT_CRITERIA.get(name)
            if criterion is None:
                raise ParseError(f"unknown sort criterion {name[:30]}")
            criteria.append((criterion, reverse))
            if len(criteria) > len(_SORT_CRITERIA) * 2:
                raise ParseError("too many sort criteria")
            if not r.maybe_sp():
                break
        r.expect(0x29)
        r.sp()
        charset = r.astring_str()  # mandatory in SORT and THREAD (RFC 5256 search-criteria)
        r.sp()
        return c.Sort(tuple(criteria), _program(r, charset, returns), uid, returns, partial)

    return parse


def _thread(uid: bool) -> Callable[[Reader], c.Command]:
    def parse(r: Reader) -> c.Command:
        r.sp()
        name = r.keyword()
        algorithm = _THREAD_ALGORITHMS.get(name)
        if algorithm is None:
            raise ParseError(f"unknown thread algorithm {name[:30]}")
        r.sp()
        charset = r.astring_str()
        r.sp()
        return c.Thread(algorithm, search_program(r, charset), uid)

    return parse


def _fetch(uid: bool) -> Callable[[Reader], c.Command]:
    def parse(r: Reader) -> c.Command:
        r.sp()
        seq = SequenceSet.parse(r.sequence_set())
        r.sp()
        attrs = fetch_attributes(r)
        changed_since: int | None = None
        vanished = False
        if r.maybe_sp():
            r.expect(0x28)
            while True:
                name = r.keyword()
                if name == "CHANGEDSINCE":
                    r.sp()
                    changed_since = r.number64()
                elif name == "VANISHED" and uid:
                    vanished = True
                else:
                    raise ParseError(f"unknown FETCH modifier {name[:30]}")
                if not r.maybe_sp():
                    break
            r.expect(0x29)
        if vanished and changed_since is None:
            raise ParseError("VANISHED needs CHANGEDSINCE")  # RFC 7162 section 3.2.6
        return c.Fetch(seq, attrs, uid, changed_since, vanished)

    return parse


_STORE_ITEMS: Final = {
    "FLAGS": (c.StoreMode.REPLACE, False),
    "FLAGS.SILENT": (c.StoreMode.REPLACE, True),
    "+FLAGS": (c.StoreMode.ADD, False),
    "+FLAGS.SILENT": (c.StoreMode.ADD, True),
    "-FLAGS": (c.StoreMode.REMOVE, False),
    "-FLAGS.SILENT": (c.StoreMode.REMOVE, True),
}
_STORE_ITEM: Final = re.compile(rb"[+-]?[A-Za-z.]+")


def _store(uid: bool) -> Callable[[Reader], c.Command]:
    def parse(r: Reader) -> c.Command:
        r.sp()
        seq = SequenceSet.parse(r.sequence_set())
        r.sp()
        unchanged_since: int | None = None
        if r.maybe(0x28):
            if r.keyword() != "UNCHANGEDSINCE":
                raise ParseError("unknown STORE modifier")
            r.sp()
            unchanged_since = r.number64()
            r.expect(0x29)
            r.sp()
        item = _STORE_ITEMS.get(r.read_pattern(_STORE_ITEM, "a store item").upper().decode("ascii"))
        if item is None:
            raise ParseError("unknown STORE item")
        r.sp()
        flags = r.flags_maybe_parenthesised()
        return c.Store(seq, item[0], flags, item[1], uid, unchanged_since)

    return parse


def _copy_move(cls: type[c.Copy | c.Move], uid: bool) -> Callable[[Reader], c.Command]:
    def parse(r: Reader) -> c.Command:
        r.sp()
        seq = SequenceSet.parse(r.sequence_set())
        r.sp()
        return cls(seq, r.mailbox(), uid)

    return parse


def _uid_expunge(r: Reader) -> c.Command:
    r.sp()
    return c.Expunge(SequenceSet.parse(r.sequence_set()))


_UID_COMMANDS: Final[dict[str, Callable[[Reader], c.Command]]] = {
    "COPY": _copy_move(c.Copy, True),
    "MOVE": _copy_move(c.Move, True),
    "FETCH": _fetch(True),
    "SEARCH": _search(True),
    "SORT": _sort(True),
    "THREAD": _thread(True),
    "STORE": _store(True),
    "EXPUNGE": _uid_expunge,
}


def _uid(r: Reader) -> c.Command:
    r.sp()
    handler = _UID_COMMANDS.get(r.keyword())
    if handler is None:
        raise ParseError("unknown UID command")
    return handler(r)


_COMMANDS: Final[dict[str, Callable[[Reader], c.Command]]] = {
    "CAPABILITY": _no_args(c.Capability()),
    "NOOP": _no_args(c.Noop()),
    "LOGOUT": _no_args(c.Logout()),
    "STARTTLS": _no_args(c.StartTls()),
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "ID": _id,
    "COMPRESS": _compress,
    "SELECT": _select(False),
    "EXAMINE": _select(True),
    "CREATE": _create,
    "DELETE": _one_mailbox(c.Delete),
    "RENAME": _rename,
    "SUBSCRIBE": _one_mailbox(c.Subscribe),
    "UNSUBSCRIBE": _one_mailbox(c.Unsubscribe),
    "LIST": _list,
    "LSUB": _lsub,
    "STATUS": _status,
    "APPEND": _append,
    "IDLE": _no_args(c.Idle()),
    "NAMESPACE": _no_args(c.Namespace()),
    "ENABLE": _enable,
    "NOTIFY": _notify,
    "GETQUOTA": _getquota,
    "GETQUOTAROOT": _one_mailbox(c.GetQuotaRoot),
    "SETQUOTA": _setquota,
    "GETMETADATA": _getmetadata,
    "SETMETADATA": _setmetadata,
    "CHECK": _no_args(c.Check()),
    "CLOSE": _no_args(c.Close()),
    "UNSELECT": _no_args(c.Unselect()),
    "EXPUNGE": _no_args(c.Expunge()),
    "SEARCH": _search(False),
    "SORT": _sort(False),
    "THREAD": _thread(False),
    "FETCH": _fetch(False),
    "STORE": _store(False),
    "COPY": _copy_move(c.Copy, False),
    "MOVE": _copy_move(c.Move, False),
    "UID": _uid,
    "CANCELUPDATE": _cancel_update,
}

# Every command name the grammar knows (the parser tells unknown commands from bad ones with it).
COMMAND_NAMES: Final = frozenset(name.encode("ascii") for name in _COMMANDS)
