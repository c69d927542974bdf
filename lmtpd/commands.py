"""Parsing of one LMTP command line into a typed command (or a refusal).

Paths are reduced to the mailbox ("user@domain"): a source route
("<@a,@b:user@d>", RFC 5321 4.1.2, obsolete) is dropped. Only the
parameters we advertise are accepted: SIZE= and BODY= on MAIL.
"""

from __future__ import annotations

import re

from lmtpd import replies
from lmtpd.events import BodyType, Command, Data, Lhlo, MailFrom, Noop, Quit, RcptTo, Rejected, Rset, Vrfy
from lmtpd.replies import Reply

_NO_ARGUMENT: dict[str, Command] = {"DATA": Data(), "RSET": Rset(), "QUIT": Quit()}
_OLD_GREETINGS = {"HELO", "EHLO"}
_KNOWN_UNSUPPORTED = {"EXPN", "HELP", "TURN", "ETRN", "BDAT", "AUTH", "STARTTLS", "XCLIENT"}
_MAX_SIZE_DIGITS = 20
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def parse_command(line: bytes) -> Command | Rejected:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return Rejected(replies.syntax_error("command (not UTF-8)"))
    verb, _, arg = text.partition(" ")
    verb = verb.upper()
    arg = arg.strip()
    if verb in _NO_ARGUMENT:
        if arg:
            return Rejected(replies.syntax_error(f"{verb} (no argument allowed)"))
        return _NO_ARGUMENT[verb]
    if verb == "NOOP":
        return Noop()
    if verb == "LHLO":
        if not arg or " " in arg:
            return Rejected(replies.syntax_error("LHLO (expected one domain)"))
        return Lhlo(arg)
    if verb == "VRFY":
        if not arg:
            return Rejected(replies.syntax_error("VRFY (expected an argument)"))
        return Vrfy(arg)
    if verb == "MAIL":
        return _parse_mail(arg)
    if verb == "RCPT":
        return _parse_rcpt(arg)
    if verb in _OLD_GREETINGS:
        return Rejected(replies.USE_LHLO)
    if verb in _KNOWN_UNSUPPORTED:
        return Rejected(replies.NOT_IMPLEMENTED)
    return Rejected(replies.UNKNOWN_COMMAND)


def _split_path(arg: str, keyword: str) -> tuple[str, str] | Reply:
    """'FROM:<a@b> SIZE=1' -> ('a@b', 'SIZE=1')."""
    head, colon, rest = arg.partition(":")
    if not colon or head.strip().upper() != keyword:
        return replies.syntax_error(f"{keyword} (expected {keyword}:<address>)")
    rest = rest.lstrip()
    if not rest.startswith("<"):
        return replies.syntax_error(f"{keyword} (address must be in <>)")
    close = _closing_bracket(rest)
    if close < 0:
        return replies.syntax_error(f"{keyword} (unterminated <address>)")
    path = rest[1:close]
    if path.startswith("@"):
        _, _, path = path.partition(":")
    # Control characters never belong in a path; refusing them here also keeps
    # the Return-Path/Delivered-To headers built from paths free of injected lines.
    if _CONTROL.search(path):
        return replies.syntax_error(f"{keyword} (control character in address)")
    if not path.startswith('"') and any(c in path for c in "<> "):
        return replies.syntax_error(f"{keyword} (bad address)")
    return path, rest[close + 1 :].strip()


def _closing_bracket(text: str) -> int:
    """Index of the '>' closing the path, skipping quoted local parts."""
    first = text.find(">")
    if first >= 0 and '"' not in text[:first]:
        return first  # no quote before it (the usual path): nothing is skipped
    quoted = False
    i = 1
    while i < len(text):
        c = text[i]
        if c == "\\" and quoted:
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == ">" and not quoted:
            return i
        i += 1
    return -1


def _parse_mail(arg: str) -> MailFrom | Rejected:
    split = _split_path(arg, "FROM")
    if isinstance(split, Reply):
        return Rejected(split)
    path, params = split
    size: int | None = None
    body = BodyType.SEVEN_BIT
    for param in params.split():
        name, _, value = param.partition("=")
        name = name.upper()
        if name == "SIZE":
            if not value.isdigit() or len(value) > _MAX_SIZE_DIGITS:
                return Rejected(replies.syntax_error("SIZE parameter"))
            size = int(value)
        elif name == "BODY":
            try:
                body = BodyType(value.upper())
            except ValueError:
                return Rejected(replies.syntax_error("BODY parameter"))
        else:
            return Rejected(replies.unsupported_parameter(name))
    return MailFrom(path, size, body)


def _parse_rcpt(arg: str) -> RcptTo | Rejected:
    split = _split_path(arg, "TO")
    if isinstance(split, Reply):
        return Rejected(split)
    path, params = split
    if params:
        return Rejected(replies.unsupported_parameter(params.split()[0].partition("=")[0].upper()))
    if not path:
        return Rejected(replies.syntax_error("RCPT (empty address)"))
    return RcptTo(path)
