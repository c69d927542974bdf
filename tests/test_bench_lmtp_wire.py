"""The benchmarks' LMTP client sends what lmtpd's own DATA decoder gives back unchanged."""

from __future__ import annotations

import pytest

from bench.lmtp_bench import wire_form
from bench.mailbox_corpus import message
from lmtpd.data_decoder import DataDecoder


@pytest.mark.parametrize(
    "data",
    [
        b"Subject: x\r\n\r\n.leading dot\r\n..two\r\n.\r\nend",
        b".starts with a dot\r\n\r\nbody\r\n",
        b"Subject: bare LF\n\nline\n.dot\n",
        message(0, 1),
        message(42, 1),
    ],
)
def test_wire_form_round_trips_through_the_servers_decoder(data: bytes) -> None:
    decoded = DataDecoder().feed(wire_form(data))
    crlf = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    expected = crlf if crlf.endswith(b"\r\n") else crlf + b"\r\n"
    assert decoded.rest == b"" and decoded.content == expected
