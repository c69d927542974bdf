"""ENVELOPE, BODY and BODYSTRUCTURE byte-for-byte on the corpus in tests/data/mime/."""

from __future__ import annotations

from pathlib import Path

import pytest

from imapd.message.fetch_render import fetch_list, render_fetch
from imapd.protocol import fetch_spec as F
from imapd.protocol.values import encode
from mailparse.headers import MAX_HEADER
from mailparse.mime_tree import MAX_DEPTH, MAX_PARTS, parse_message
from mailparse.view import MessageView

CORPUS = Path(__file__).parent / "data" / "mime"


def load(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def view_of(data: bytes) -> MessageView:
    return MessageView(
        uid=7, modseq=3, flags=(), internal_date=837596665, tz_offset_minutes=-420, size=len(data), chunks=(data,)
    )


def fetch(data: bytes, *attrs: F.FetchAttribute) -> bytes:
    return encode(fetch_list(render_fetch(attrs, view_of(data))))


def test_rfc3501_section8_example_full() -> None:
    # The FETCH 12 FULL response of RFC 3501 section 8, for a message with the same header and a
    # 3028-octet, 92-line body (the message's size differs from 4286: our header is shorter).
    data = load("rfc3501_example.eml")
    flags_view = MessageView(
        uid=12,
        modseq=1,
        flags=("\\Seen",),
        internal_date=837596665,
        tz_offset_minutes=-420,
        size=4286,
        chunks=(data,),
    )
    out = encode(fetch_list(render_fetch(F.MACROS["FULL"], flags_view)))
    assert out == (
        b'(FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" RFC822.SIZE 4286 '
        b'ENVELOPE ("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) ((NIL NIL "imap" "cac.washington.edu")) '
        b'((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL '
        b'"<B27397-0100000@cac.washington.edu>") '
        b'BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92))'
    )


def test_alternative_with_encoded_words_kept_raw() -> None:
    data = load("alternative.eml")
    assert fetch(data, F.ENVELOPE) == (
        b'(ENVELOPE ("Tue, 03 Mar 2020 10:00:00 +0100" "=?ISO-8859-1?Q?Gr=FC=DFe?= aus =?UTF-8?B?S8O2bG4=?=" '
        b'(("=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?=" NIL "joerg" "example.org")) '
        b'(("=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?=" NIL "joerg" "example.org")) '
        b'(("=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?=" NIL "joerg" "example.org")) '
        b'(("Doe, Jane" NIL "jane" "example.com")) NIL NIL NIL "<alt-1@example.org>"))'
    )
    assert fetch(data, F.BODYSTRUCTURE) == (
        b'(BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 41 0 NIL NIL NIL NIL)'
        b'("TEXT" "HTML" ("CHARSET" "iso-8859-1") NIL NIL "BASE64" 28 0 NIL NIL NIL NIL) '
        b'"ALTERNATIVE" ("BOUNDARY" "=_alt") NIL NIL NIL))'
    )
    # Sizes checked independently of the parser: the part ends before the CRLF of the next delimiter.
    plain = data.split(b"quoted-printable\r\n\r\n")[1].split(b"\r\n--=_alt")[0]
    assert len(plain) == 41


def test_nested_mixed_with_attachments_extension_data() -> None:
    data = load("mixed_nested.eml")
    assert fetch(data, F.BODY) == (
        b'(BODY ((("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 0)'
        b'("TEXT" "HTML" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 16 0) "ALTERNATIVE")'
        b'("APPLICATION" "PDF" ("NAME" "report.pdf") NIL "Quarterly report" "BASE64" 74)'
        b'("IMAGE" "PNG" NIL "<logo@example.org>" NIL "BASE64" 12) "MIXED"))'
    )
    assert fetch(data, F.BODYSTRUCTURE) == (
        b'(BODYSTRUCTURE ((("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 0 NIL NIL NIL NIL)'
        b'("TEXT" "HTML" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 16 0 NIL NIL NIL NIL) '
        b'"ALTERNATIVE" ("BOUNDARY" "inner") NIL NIL NIL)'
        b'("APPLICATION" "PDF" ("NAME" "report.pdf") NIL "Quarterly report" "BASE64" 74 '
        b'"Q2hlY2sgSW50ZWdyaXR5IQ==" ("ATTACHMENT" ("FILENAME" "report.pdf")) NIL NIL)'
        b'("IMAGE" "PNG" NIL "<logo@example.org>" NIL "BASE64" 12 NIL ("INLINE" NIL) ("en" "de") '
        b'"http://example.org/logo.png") "MIXED" ("BOUNDARY" "outer") NIL "en" NIL))'
    )


def test_message_rfc822_part_has_envelope_structure_and_lines() -> None:
    data = load("rfc822_inside.eml")
    embedded = data.split(b"forwarded\r\n\r\n")[1].split(b"\r\n--fwd--")[0]
    assert (len(embedded), embedded.count(b"\n") + 1) == (527, 21)
    assert fetch(data, F.BODYSTRUCTURE) == (
        b'(BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 26 0 NIL NIL NIL NIL)'
        b'("MESSAGE" "RFC822" NIL NIL "forwarded" "7BIT" 527 '
        b'("Sun, 4 Apr 2021 09:15:00 -0400" "the original" (("Original Sender" NIL "orig" "example.net")) '
        b'((NIL NIL "list-bounces" "example.net")) ((NIL NIL "replies" "example.net")) '
        b'((NIL NIL "team" NIL)(NIL NIL "a" "example.net")("B B" NIL "b" "example.net")(NIL NIL NIL NIL)) '
        b'NIL NIL "<parent@example.net>" "<orig-1@example.net>") '
        b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "8BIT" 24 0 NIL NIL NIL NIL)'
        b'("APPLICATION" "OCTET-STREAM" NIL NIL NIL "7BIT" 10 NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "in") NIL NIL NIL) '
        b'20 NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "fwd") NIL NIL NIL))'
    )


def test_non_ascii_headers_groups_and_8bit_subject() -> None:
    data = load("non_ascii_headers.eml")
    subject = "Résumé des réunions".encode()
    assert fetch(data, F.ENVELOPE) == (
        b'(ENVELOPE ("Fri, 12 Jun 2020 16:45:00 +0200" {%d}\r\n' % len(subject) + subject + b" "
        b'(("=?iso-8859-1?q?Andr=E9?= Pirard" NIL "PIRARD" "vm1.ulg.ac.be")) '
        b'(("=?iso-8859-1?q?Andr=E9?= Pirard" NIL "PIRARD" "vm1.ulg.ac.be")) '
        b'(("=?iso-8859-1?q?Andr=E9?= Pirard" NIL "PIRARD" "vm1.ulg.ac.be")) '
        b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) '
        b'((NIL NIL "Friends" NIL)("=?utf-8?b?w4lsb2RpZQ==?=" NIL "elodie" "example.fr")'
        b'(NIL NIL "zoe" "example.fr")(NIL NIL NIL NIL)(NIL NIL "carol" "example.com")) '
        b'NIL NIL "<nonascii@example.fr>"))'
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # The boundary never appears: the multipart is read as text/plain, whole body.
        ("broken_boundary.eml", b'(BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 95 5))'),
        # No closing delimiter: the last part runs to the end of the data.
        (
            "truncated_multipart.eml",
            b'(BODY (("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 10 0)'
            b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 47 0) "MIXED"))',
        ),
        # No header at all: everything is the body, defaults apply.
        ("no_headers.eml", b'(BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 68 2))'),
        ("truncated_base64.eml", b'(BODY ("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "BASE64" 87 2))'),
        # Bare LF line ends, an unterminated quoted charset, 8-bit junk and NUL in the body.
        (
            "garbage_8bit.eml",
            b'(BODY ("TEXT" "PLAIN" ("CHARSET" "unterminated") NIL NIL "QUOTED-PRINTABLE" 56 2))',
        ),
    ],
)
def test_broken_messages_get_a_readable_structure(name: str, expected: bytes) -> None:
    assert fetch(load(name), F.BODY) == expected


def test_no_headers_envelope_is_all_nil() -> None:
    assert fetch(load("no_headers.eml"), F.ENVELOPE) == b"(ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))"


def test_8bit_garbage_in_addresses_goes_out_as_literals() -> None:
    out = fetch(load("garbage_8bit.eml"), F.ENVELOPE)
    assert out.startswith(b'(ENVELOPE (NIL {20}\r\ncaf\xe9 \xc3( =?bad?x?zz?= (({7}\r\n\xff\xfe junk NIL "x" {11}\r\n')


def test_sender_and_reply_to_default_to_from_when_empty() -> None:
    data = b"From: a@b.c\r\nSender:\r\nReply-To: \r\n\r\nx"
    assert fetch(data, F.ENVELOPE) == (
        b'(ENVELOPE (NIL NIL ((NIL NIL "a" "b.c")) ((NIL NIL "a" "b.c")) ((NIL NIL "a" "b.c")) NIL NIL NIL NIL NIL))'
    )


def test_envelope_from_header_block_only() -> None:
    data = load("rfc822_inside.eml")
    header = data[: data.index(b"\r\n\r\n") + 4]
    header_view = MessageView(uid=1, modseq=1, flags=(), internal_date=0, tz_offset_minutes=0, size=0, header=header)
    assert encode(fetch_list(render_fetch((F.ENVELOPE,), header_view))) == fetch(data, F.ENVELOPE)


def test_deep_nesting_is_capped() -> None:
    depth = 200
    head = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(depth))
    data = b"Subject: deep\r\n" + head + b"Content-Type: text/plain\r\n\r\nleaf\r\n"
    root = parse_message(data)
    levels = 0
    node = root
    while node.children:
        node = node.children[0]
        levels += 1
    assert levels == MAX_DEPTH
    assert node.content_type.main == b"APPLICATION"  # the capped multipart is an opaque leaf
    assert fetch(data, F.BODYSTRUCTURE).startswith(b"(BODYSTRUCTURE (" + b"(" * (MAX_DEPTH - 1))


def test_part_count_is_capped() -> None:
    parts = b"".join(b"--x\r\n\r\np%d\r\n" % i for i in range(MAX_PARTS + 500))
    data = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n" + parts + b"--x--\r\n"
    root = parse_message(data)
    assert len(root.children) == MAX_PARTS - 1  # the root counts as one part


def test_longer_line_is_not_a_delimiter_and_padding_is() -> None:
    data = b"Content-Type: multipart/mixed; boundary=ab\r\n\r\n--ab \t\r\n\r\none\r\n--abc\r\nstill one\r\n--ab--  \r\n"
    root = parse_message(data)
    assert [c.body for c in root.children] == [b"one\r\n--abc\r\nstill one"]


def test_digest_parts_default_to_message_rfc822() -> None:
    data = b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: inner\r\n\r\nhello\r\n--d--\r\n"
    assert fetch(data, F.BODY) == (
        b'(BODY (("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 23 (NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL) '
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 5 0) 2) "DIGEST"))'
    )


def test_encoded_message_rfc822_becomes_octet_stream() -> None:
    data = b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogeA==\r\n"
    assert fetch(data, F.BODY) == b'(BODY ("APPLICATION" "OCTET-STREAM" NIL NIL NIL "BASE64" 18))'


def test_huge_header_lines_and_many_fields() -> None:
    subject = b"x" * (512 * 1024)
    many = b"".join(b"X-F%d: v\r\n" % i for i in range(40_000))
    data = b"Subject: " + subject + b"\r\n" + many + b"From: a@b.c\r\n\r\nbody\r\n"
    out = fetch(data, F.ENVELOPE, F.BODY)
    assert out.startswith(b"(ENVELOPE (NIL {%d}\r\n" % len(subject) + subject + b' ((NIL NIL "a" "b.c"))')
    assert out.endswith(b'BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 6 1))')


def test_address_lists_are_capped_and_groups_stay_balanced() -> None:
    groups = b"To: " + b"g: a@b.c, d@e.f;" * 400_000 + b"\r\n\r\n"
    out = fetch(groups, F.ENVELOPE)
    assert 0 < out.count(b"(NIL NIL NIL NIL)") == out.count(b'(NIL NIL "g" NIL)') <= 1000
    assert len(out) < 100_000  # from a 6.4 MB header
    simple = b"To: " + b"a@b.c, " * 400_000 + b"x@y.z\r\n\r\n"
    assert fetch(simple, F.ENVELOPE).count(b'(NIL NIL "a" "b.c")') == 1000


def test_header_block_is_capped_at_one_mebibyte() -> None:
    fields = b"X-Filler: 0123456789012345678901234567890123456789\r\n" * 30_000  # 1.5 MB of valid fields
    data = b"Subject: first\r\n" + fields + b"From: late@example.org\r\n\r\nbody\r\n"
    root = parse_message(data)
    assert root.body_start == MAX_HEADER
    envelope = fetch(data, F.ENVELOPE)
    assert envelope.startswith(b'(ENVELOPE (NIL "first" NIL NIL NIL')  # From: is past the cap


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_empty_parts_and_delimiter_on_first_body_line(eol: bytes) -> None:
    data = eol.join(
        [b"Content-Type: multipart/mixed; boundary=q", b"", b"--q", b"--q", b"", b"two", b"--q", b"--q--", b""]
    )
    root = parse_message(data)
    assert [c.body for c in root.children] == [b"", b"two", b""]
