"""FetchPlan writes what `render_values` + `fetch_response` write, byte for byte: for the
attributes it writes itself (FLAGS, UID, MODSEQ, RFC822.SIZE, BODY[HEADER], BODY[]) and for
those it hands to the general renderer, alone and mixed, with and without \\Recent, with the
message whole, in pieces or only its header (issue 13)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from imapd.message.fetch_render import FetchPlan, fetch_response, render_values
from imapd.protocol import fetch_spec as F
from imapd.protocol.fetch_spec import BodySection, Partial, Section, TextSpec
from mailparse.errors import MissingMessageData
from mailparse.headers import header_end
from mailparse.view import MessageView
from tests.imap_server_wire import connected, running_server, trio_test

CORPUS = Path(__file__).parent / "data" / "mime"
NESTED = (CORPUS / "mixed_nested.eml").read_bytes()
HEADERLESS = b"no header line here\r\nbody\r\n"

ATTRIBUTES: tuple[F.FetchAttribute, ...] = (
    F.FLAGS,
    F.UID,
    F.MODSEQ,
    F.RFC822_SIZE,
    F.INTERNALDATE,
    F.RFC822_HEADER,
    F.ENVELOPE,
    BodySection(Section(text=TextSpec.HEADER), peek=True),
    BodySection(Section(text=TextSpec.HEADER)),
    BodySection(Section(text=TextSpec.HEADER), Partial(3, 20), peek=True),
    BodySection(Section(text=TextSpec.HEADER_FIELDS, fields=("Subject", "From")), peek=True),
    BodySection(peek=True),
    BodySection(),
    BodySection(partial=Partial(10, 100), peek=True),
    BodySection(Section(text=TextSpec.TEXT), peek=True),
    BodySection(Section(part=(1,)), peek=True),
    BodySection(Section(part=(1,), text=TextSpec.MIME), peek=True),
)


def _views(message: bytes) -> list[MessageView]:
    header = message[: header_end(message)]
    whole = MessageView(7, 31, ("\\Seen", "$Label1"), 1583226000, 60, len(message), None, (message,))
    pieces = tuple(message[at : at + 97] for at in range(0, len(message), 97))
    return [
        whole,
        whole._replace(recent=True),
        whole._replace(flags=("\\Recent", "\\Answered"), recent=True),
        whole._replace(flags=(), chunks=pieces),
        whole._replace(chunks=None, header=header),
        whole._replace(chunks=None, header=header + b"stray\r\n"),  # the store's cut, cut again
    ]


def _general(seq: int, attributes: tuple[F.FetchAttribute, ...], view: MessageView) -> bytes:
    labels = [a.label() for a in attributes]
    return b"".join(fetch_response(seq, labels, render_values(attributes, view)))


@pytest.mark.parametrize("message", [NESTED, HEADERLESS], ids=["nested", "headerless"])
def test_each_attribute_and_each_pair_as_the_general_renderer(message: bytes) -> None:
    lists: list[tuple[F.FetchAttribute, ...]] = [(a,) for a in ATTRIBUTES]
    lists += itertools.permutations(ATTRIBUTES[:9], 2)
    lists.append(ATTRIBUTES)
    compared = 0
    for attributes in lists:
        plan = FetchPlan(attributes)
        for view in _views(message):
            try:
                expected = _general(5, attributes, view)
            except MissingMessageData:
                with pytest.raises(MissingMessageData):
                    plan.response(5, view)
                continue
            assert b"".join(plan.response(5, view)) == expected, (attributes, view)
            compared += 1
    assert compared > 300


def test_a_whole_body_in_pieces_stays_in_its_pieces() -> None:
    pieces = (b"Subject: x\r\n\r\n", b"a" * 1000, b"b" * 10)
    view = MessageView(1, 1, (), 0, 0, sum(map(len, pieces)), None, pieces)
    out = FetchPlan((BodySection(peek=True),)).response(1, view)
    assert out[-4:-1] == list(pieces) and out[-4] is pieces[0]


def test_the_plan_says_what_the_fetch_needs() -> None:
    headers = FetchPlan((F.FLAGS, BodySection(Section(text=TextSpec.HEADER), peek=True)))
    assert headers.needs.header and not headers.needs.body and not headers.sets_seen and headers.wants_flags
    assert not headers.from_index and not headers.wants_envelope
    assert headers.labels == [b"FLAGS", b"BODY[HEADER]"]
    seen = FetchPlan((F.ENVELOPE, BodySection()))
    assert seen.sets_seen and seen.needs.body and seen.wants_envelope
    assert seen.needs_without_envelope.body and not seen.needs_without_envelope.header
    envelope_only = FetchPlan((F.UID, F.ENVELOPE))
    assert envelope_only.needs.header and not envelope_only.needs_without_envelope.any
    assert FetchPlan((F.UID, F.FLAGS)).from_index


@trio_test
async def test_a_repeated_fetch_follows_condstore_and_sets_seen_each_time() -> None:
    """The session keeps the plan of the FETCH a client repeats: the same command answers
    with MODSEQ once CONDSTORE is on (implicitly, by a SEARCH MODSEQ), and a FETCH that sets
    \\Seen still sets it (and shows FLAGS) when repeated after the flag was taken away."""
    message = b"Subject: one\r\n\r\nbody\r\n"
    async with running_server() as (_, ports, _store), connected(ports[0]) as client:
        await client.login()
        appended = await client.command(b"APPEND INBOX {%d+}\r\n" % len(message) + message)
        assert b"OK" in appended[-1], appended
        await client.command("SELECT INBOX")
        first = await client.command(b"FETCH 1 (FLAGS BODY.PEEK[HEADER])")
        assert first[0] == b"* 1 FETCH (FLAGS (\\Recent) BODY[HEADER] {16}\r\nSubject: one\r\n\r\n)\r\n"
        assert (await client.command(b"FETCH 1 (FLAGS BODY.PEEK[HEADER])"))[0] == first[0]
        enabled = await client.command(b"SEARCH MODSEQ 1")  # CONDSTORE on (RFC 7162 3.1), no other FETCH between
        assert enabled[0].startswith(b"* OK [HIGHESTMODSEQ "), enabled
        again = await client.command(b"FETCH 1 (FLAGS BODY.PEEK[HEADER])")
        assert again[0].startswith(first[0][: -len(b")\r\n")] + b" MODSEQ ("), again
        for _ in range(2):
            seen = await client.command(b"FETCH 1 (BODY[TEXT])")
            shown = b"* 1 FETCH (BODY[TEXT] {6}\r\nbody\r\n FLAGS (\\Seen \\Recent) MODSEQ ("
            assert seen[0].startswith(shown), seen
            await client.command(b"STORE 1 -FLAGS.SILENT (\\Seen)")
