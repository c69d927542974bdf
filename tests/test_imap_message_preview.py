"""The stored preview (mailparse/preview.py): Dovecot's snippet rules, bounded."""

from __future__ import annotations

import base64

from mailparse.preview import PREVIEW_CHARS, SOURCE_LIMIT, preview_text, snippet


def test_dovecot_snippet_cases() -> None:
    # The cases of Dovecot's test-message-snippet.c: quoted lines dropped, whitespace collapsed.
    assert preview_text(b"Content-Type: text/plain\n\n1234567890 234567890")[:12] == "1234567890 2"
    assert preview_text(b"Content-Type: text/plain\n\nline1\n>quote2\nline2\n") == "line1 line2"
    body = b"line1\n>quote2\n> quote3\n > line4\n\n  \t\t  \nline5\n  \t "
    assert preview_text(b"Content-Type: text/plain\n\n" + body) == "line1 > line4 line5"


def test_all_quoted_gives_the_quote() -> None:
    assert preview_text(b"Subject: q\r\n\r\n> only quoted\r\n>second\r\n") == ">only quoted second"


def test_html_is_reduced_to_its_text() -> None:
    msg = (
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<html><head><style>p{x:1}</style><title>T</title></head>"
        b"<body><p>Hello &amp; <b>world</b></p>\r\n> quoted\r\n  more   text &eacute;<script>x()</script></body>\r\n"
    )
    assert preview_text(msg) == "Hello & world more text é"


def test_first_text_part_decoded_from_base64_and_charset() -> None:
    text = "Grüße aus Köln, bis bald".encode("iso-8859-1")
    msg = (
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: image/png\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(text)
        + b"\r\n--b--\r\n"
    )
    assert preview_text(msg) == "Grüße aus Köln, bis bald"


def test_no_text_part_gives_an_empty_preview() -> None:
    assert preview_text(b"Content-Type: image/png\r\n\r\nAAAA\r\n") == ""
    assert preview_text(b"Subject: nothing\r\n\r\n") == ""


def test_bounded_length_and_work() -> None:
    assert len(snippet("word " * 10_000)) == PREVIEW_CHARS
    huge = b"Content-Type: text/plain\r\n\r\n" + b"x" * (8 * SOURCE_LIMIT)
    assert preview_text(huge) == "x" * PREVIEW_CHARS
    # Many tags or an unclosed comment cost no more than their length; text past the bound is not seen.
    assert preview_text(b"Content-Type: text/html\r\n\r\n" + b"<b>" * 1_000 + b"hi") == "hi"
    assert preview_text(b"Content-Type: text/html\r\n\r\n" + b"<b>" * 100_000 + b"hi") == ""
    assert preview_text(b"Content-Type: text/html\r\n\r\n<!-- " + b"a" * 100_000) == ""
