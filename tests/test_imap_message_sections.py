"""BODY[section]<partial>, RFC822.*, BINARY and the simple FETCH items."""

from __future__ import annotations

from pathlib import Path

import pytest

from imapd.message.binary_content import BinaryContent, encode_binary_parts, part_content
from imapd.message.fetch_render import fetch_list, render_fetch
from imapd.protocol import fetch_spec as F
from imapd.protocol.fetch_spec import BodySection, Partial, Section, TextSpec
from imapd.protocol.values import NIL, ChunkedLiteral, Literal, Number, Raw, Value, encode
from mailparse.errors import MissingMessageData, UnknownTransferEncoding
from mailparse.mime_tree import parse_message
from mailparse.view import MessageView

CORPUS = Path(__file__).parent / "data" / "mime"
NESTED = (CORPUS / "mixed_nested.eml").read_bytes()
FORWARD = (CORPUS / "rfc822_inside.eml").read_bytes()


def view_of(data: bytes, chunks: tuple[bytes, ...] | None = None) -> MessageView:
    return MessageView(
        uid=42,
        modseq=9,
        flags=("\\Seen", "$Label1"),
        internal_date=1583226000,
        tz_offset_minutes=60,
        size=len(data),
        chunks=chunks if chunks is not None else (data,),
    )


def one(data: bytes, attr: F.FetchAttribute) -> tuple[bytes, Value]:
    [pair] = render_fetch((attr,), view_of(data))
    return pair


def body(data: bytes, part: tuple[int, ...] = (), text: TextSpec | None = None, fields: tuple[str, ...] = ()) -> Value:
    return one(data, BodySection(Section(part, text, fields)))[1]


def test_header_and_text_of_the_message() -> None:
    split = NESTED.index(b"\r\n\r\n") + 4
    assert body(NESTED, text=TextSpec.HEADER) == Literal(NESTED[:split])
    assert body(NESTED, text=TextSpec.TEXT) == Literal(NESTED[split:])


def test_header_fields_is_case_insensitive_keeps_order_folding_and_ends_with_crlf() -> None:
    data = b"From: a@b\r\nSubject: one\r\n  two\r\nTo: c@d\r\nsubject: again\r\n\r\nbody"
    assert body(data, text=TextSpec.HEADER_FIELDS, fields=("SUBJECT", "x-none")) == Literal(
        b"Subject: one\r\n  two\r\nsubject: again\r\n\r\n"
    )
    assert body(data, text=TextSpec.HEADER_FIELDS_NOT, fields=("subject",)) == Literal(b"From: a@b\r\nTo: c@d\r\n\r\n")
    # No field matches: just the blank line (RFC 3501).
    assert body(data, text=TextSpec.HEADER_FIELDS, fields=("Cc",)) == Literal(b"\r\n")


def test_response_labels() -> None:
    attr = BodySection(Section((2,), TextSpec.HEADER_FIELDS, ("Date", "From")), Partial(0, 100), peek=True)
    label, _ = one(FORWARD, attr)
    assert label == b"BODY[2.HEADER.FIELDS (Date From)]<0>"
    assert BodySection().label() == b"BODY[]"
    assert BodySection(Section((1, 2), TextSpec.MIME)).label() == b"BODY[1.2.MIME]"


def test_numbered_parts_of_nested_multipart() -> None:
    assert body(NESTED, (1, 1)) == Literal(b"Plain body")
    assert body(NESTED, (1, 2)) == Literal(b"<p>HTML body</p>")
    assert body(NESTED, (3,)) == Literal(b"iVBORw0KGgo=")
    mime = body(NESTED, (2,), TextSpec.MIME)
    assert isinstance(mime, Literal)
    assert mime.value.startswith(b"Content-Type: application/pdf;") and mime.value.endswith(b"\r\n\r\n")
    # Part 1 is itself a multipart: its body runs from its first delimiter to its close delimiter.
    whole = body(NESTED, (1,))
    assert isinstance(whole, Literal)
    assert whole.value.startswith(b"--inner\r\n") and whole.value.endswith(b"--inner--\r\n")


def test_parts_inside_message_rfc822() -> None:
    embedded = FORWARD.split(b"forwarded\r\n\r\n")[1].split(b"\r\n--fwd--")[0]
    inner_split = embedded.index(b"\r\n\r\n") + 4
    assert body(FORWARD, (2,)) == Literal(embedded)
    assert body(FORWARD, (2,), TextSpec.HEADER) == Literal(embedded[:inner_split])
    assert body(FORWARD, (2,), TextSpec.TEXT) == Literal(embedded[inner_split:])
    assert body(FORWARD, (2,), TextSpec.HEADER_FIELDS, ("subject",)) == Literal(b"Subject: the original\r\n\r\n")
    assert body(FORWARD, (2, 1)) == Literal("Original text with café".encode())
    assert body(FORWARD, (2, 2)) == Literal(b"BINARYDATA")
    assert body(FORWARD, (2, 1), TextSpec.MIME) == Literal(
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )


def test_non_multipart_message_has_part_one() -> None:
    data = b"Subject: s\r\n\r\nonly body\r\n"
    assert body(data, (1,)) == Literal(b"only body\r\n")
    assert body(data, (2,)) is NIL
    assert body(data, (1, 1)) is NIL


def test_missing_sections_are_nil() -> None:
    assert body(NESTED, (9,)) is NIL
    assert body(NESTED, (1, 3)) is NIL
    assert body(NESTED, (2,), TextSpec.HEADER) is NIL  # part 2 is not a message/rfc822
    assert body(NESTED, (2,), TextSpec.TEXT) is NIL


def test_partial_fetch() -> None:
    label, value = one(NESTED, BodySection(Section(), Partial(5, 10), peek=True))
    assert label == b"BODY[]<5>"
    assert encode(value) == b"{10}\r\n" + NESTED[5:15]
    label, value = one(NESTED, BodySection(Section((1, 1)), Partial(6, 100)))
    assert (label, value) == (b"BODY[1.1]<6>", Literal(b"body"))
    _, value = one(NESTED, BodySection(Section((1, 1)), Partial(500, 10)))
    assert encode(value) == b"{0}\r\n"


def test_whole_message_streams_chunks_without_joining() -> None:
    chunks = (NESTED[:100], NESTED[100:700], NESTED[700:])
    [(label, value)] = render_fetch((F.RFC822,), view_of(NESTED, chunks))
    assert label == b"RFC822"
    assert value == ChunkedLiteral(len(NESTED), chunks)
    [(_, value)] = render_fetch((BodySection(Section(), Partial(90, 20)),), view_of(NESTED, chunks))
    assert value == ChunkedLiteral(20, (NESTED[90:100], NESTED[100:110]))
    assert b"".join(value.chunks) == NESTED[90:110]


def test_rfc822_equivalents() -> None:
    split = FORWARD.index(b"\r\n\r\n") + 4
    pairs = render_fetch((F.RFC822_HEADER, F.RFC822_TEXT, F.RFC822_SIZE), view_of(FORWARD))
    assert pairs == [
        (b"RFC822.HEADER", Literal(FORWARD[:split])),
        (b"RFC822.TEXT", Literal(FORWARD[split:])),
        (b"RFC822.SIZE", Number(len(FORWARD))),
    ]


def test_header_only_view_answers_header_items_and_refuses_body_items() -> None:
    split = FORWARD.index(b"\r\n\r\n") + 4
    header_view = MessageView(
        uid=1, modseq=1, flags=(), internal_date=0, tz_offset_minutes=0, size=len(FORWARD), header=FORWARD[:split]
    )
    attrs: tuple[F.FetchAttribute, ...] = (
        F.RFC822_HEADER,
        BodySection(Section((), TextSpec.HEADER_FIELDS, ("To",)), peek=True),
    )
    assert F.data_needs(attrs) == F.DataNeeds(header=True, body=False)
    assert render_fetch(attrs, header_view) == [
        (b"RFC822.HEADER", Literal(FORWARD[:split])),
        (b"BODY[HEADER.FIELDS (To)]", Literal(b"To: someone@example.com\r\n\r\n")),
    ]
    with pytest.raises(MissingMessageData):
        render_fetch((F.BODYSTRUCTURE,), header_view)
    bare = MessageView(uid=1, modseq=1, flags=(), internal_date=0, tz_offset_minutes=0, size=0)
    with pytest.raises(MissingMessageData):
        render_fetch((F.ENVELOPE,), bare)


def test_simple_items_and_internaldate_format() -> None:
    view = MessageView(
        uid=42,
        modseq=9,
        flags=("\\Seen", "$Label1"),
        internal_date=1583226000,  # 2020-03-03 09:00:00 UTC
        tz_offset_minutes=330,
        size=1234,
        recent=True,
    )
    pairs = render_fetch((F.UID, F.FLAGS, F.MODSEQ, F.INTERNALDATE, F.RFC822_SIZE), view)
    assert encode(fetch_list(pairs)) == (
        b'(UID 42 FLAGS (\\Seen $Label1 \\Recent) MODSEQ (9) INTERNALDATE " 3-Mar-2020 14:30:00 +0530" '
        b"RFC822.SIZE 1234)"
    )
    west = MessageView(uid=1, modseq=1, flags=(), internal_date=837596665, tz_offset_minutes=-420, size=0)
    assert encode(render_fetch((F.INTERNALDATE,), west)[0][1]) == b'"17-Jul-1996 02:44:25 -0700"'


def test_binary_decodes_content_transfer_encoding() -> None:
    alt = (CORPUS / "alternative.eml").read_bytes()
    pairs = render_fetch(
        (F.BinarySection((1,), peek=True), F.BinarySection((2,)), F.BinarySize((2,)), F.BinarySection((5,))),
        view_of(alt),
    )
    html = "<p>Schöne Grüße</p>".encode("iso-8859-1")
    text = "Schöne Grüße aus Köln".encode()
    # Decoded content goes out as literal8, as Dovecot sends it.
    assert pairs == [
        (b"BINARY[1]", Raw(b"~{%d}\r\n" % len(text) + text)),
        (b"BINARY[2]", Raw(b"~{%d}\r\n" % len(html) + html)),
        (b"BINARY.SIZE[2]", Number(len(html))),
        (b"BINARY[5]", NIL),
    ]
    nul = b"Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n"
    [(_, value)] = render_fetch((F.BinarySection((1,)),), view_of(nul))
    assert encode(value) == b"~{3}\r\n\x00\x01\x02"


NESTED_BINARY = (
    b"Subject: outer\r\n"
    b'Content-Type: multipart/mixed; boundary="o"\r\n'
    b"\r\n"
    b"--o\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Transfer-Encoding:\r\n quoted-printable\r\n"
    b"\r\n"
    b"a=3Db\r\n"
    b"--o\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"Subject: inner\r\n"
    b"Content-Transfer-Encoding: BASE64\r\n"
    b"\r\n"
    b"aGk=\r\n"
    b"--o\r\n"
    b"Content-Type: application/x-thing\r\n"
    b"Content-Transfer-Encoding: x-uuencode\r\n"
    b"\r\n"
    b"begin\r\n"
    b"--o--\r\n"
)


def test_binary_whole_and_message_parts_are_decoded_in_place() -> None:
    root = parse_message(NESTED_BINARY)
    # A folded field is rewritten whole; the leaf's body decoded.
    assert part_content(root, (1,)) == BinaryContent(b"a=b", True)
    inner = part_content(root, (2,))
    assert inner == BinaryContent(b"Subject: inner\r\nContent-Transfer-Encoding: binary\r\n\r\nhi", True)
    assert part_content(root, (2, 1)) == BinaryContent(b"hi", True)
    assert part_content(root, (4,)) is None
    # The whole message (and the multipart) holds a part we cannot decode: UNKNOWN-CTE.
    for path in ((), (3,)):
        with pytest.raises(UnknownTransferEncoding):
            part_content(root, path)
    plain = parse_message(b"Subject: x\r\n\r\nplain\r\n")
    assert part_content(plain, ()) == BinaryContent(b"Subject: x\r\n\r\nplain\r\n", False)
    assert part_content(plain, (1,)) == BinaryContent(b"plain\r\n", False)
    [(_, value)] = render_fetch((F.BinarySection((1,)),), view_of(b"Subject: x\r\n\r\nplain\r\n"))
    assert encode(value) == b"{7}\r\nplain\r\n"  # nothing decoded: a plain literal


def test_appended_binary_parts_are_stored_as_base64_and_decode_back() -> None:
    raw = bytes(range(256)) * 3
    message = (
        b"Subject: b\r\n"
        b'Content-Type: multipart/mixed; boundary="z"\r\n\r\n'
        b"--z\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: Binary\r\n\r\n"
        + raw
        + b"\r\n--z\r\nContent-Type: text/plain\r\n\r\nkept as it is\r\n--z--\r\n"
    )
    stored = encode_binary_parts(message)
    assert b"\x00" not in stored and b"Content-Transfer-Encoding: base64\r\n" in stored
    assert all(len(line) <= 76 for line in stored.split(b"\r\n"))
    assert b"kept as it is" in stored
    root = parse_message(stored)
    assert part_content(root, (1,)) == BinaryContent(raw, True)
    assert part_content(root, (2,)) == BinaryContent(b"kept as it is", False)
    assert encode_binary_parts(b"Subject: none\r\n\r\ntext\r\n") == b"Subject: none\r\n\r\ntext\r\n"
