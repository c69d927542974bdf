"""The benchmarks' LMTP clients: what they send lmtpd's own DATA decoder gives back unchanged, and the
bytes on the wire are Postfix's transaction shape, the same as main's trio client sent."""

from __future__ import annotations

import hashlib
import pathlib
import socket
import threading

import pytest
import trio

from bench.lmtp_bench import LmtpClient, wire_form
from bench.lmtp_fill import SENDER, BlockingLmtpClient, WireCorpus
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


class _RecordingLmtpServer:
    """A loopback LMTP server that accepts everything and records every byte it receives."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = bytearray()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(30)
            conn.sendall(b"220 recorder LMTP\r\n")
            buf = b""
            in_data = False
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                self.received += data
                buf += data
                while True:
                    if in_data:
                        end = buf.find(b"\r\n.\r\n")
                        if end < 0:
                            break
                        buf, in_data = buf[end + 5 :], False
                        conn.sendall(b"250 2.0.0 stored\r\n")
                        continue
                    nl = buf.find(b"\r\n")
                    if nl < 0:
                        break
                    line, buf = buf[:nl], buf[nl + 2 :]
                    verb = line.split(b" ")[0].upper()
                    if verb == b"LHLO":
                        conn.sendall(b"250-recorder\r\n250-PIPELINING\r\n250 SIZE 67108864\r\n")
                    elif verb == b"DATA":
                        conn.sendall(b"354 go ahead\r\n")
                        in_data = True
                    else:
                        conn.sendall(b"250 ok\r\n")

    def close(self) -> bytes:
        self.thread.join(timeout=30)
        self.listener.close()
        return bytes(self.received)


# sha256 of the bytes main's trio LmtpClient (before the blocking client) sent for LHLO and
# messages 0..4 of the corpus (seed 1), 99 (the attachment) and 107 (the subject marker).
_TODAYS_WIRE_SHA256 = "58fd9a8399d4c18b1207cb92c7ebebe13898635ad74c67bf1bc67b219f450e59"
_MESSAGES = (0, 1, 2, 3, 4, 99, 107)


def _expected_wire() -> bytes:
    out = b"LHLO bench.test\r\n"
    for n in _MESSAGES:
        wire = wire_form(message(n, 1))
        out += b"MAIL FROM:<sender@bench.test> SIZE=%d\r\nRCPT TO:<bench@bench.test>\r\nDATA\r\n" % len(wire)
        out += wire
    return out


def test_the_blocking_fill_client_sends_todays_bytes(tmp_path: pathlib.Path) -> None:
    server = _RecordingLmtpServer()
    with WireCorpus.build(tmp_path, 108, 1) as corpus:
        client = BlockingLmtpClient.connect("127.0.0.1", server.port)
        for n in _MESSAGES:
            client.deliver("bench@bench.test", corpus.wire(n), SENDER)
        client.close()
    sent = server.close()
    assert sent == _expected_wire()
    assert hashlib.sha256(sent).hexdigest() == _TODAYS_WIRE_SHA256


def test_the_trio_client_sends_the_same_bytes() -> None:
    server = _RecordingLmtpServer()

    async def run() -> None:
        client = await LmtpClient.connect("127.0.0.1", server.port)
        for n in _MESSAGES:
            await client.deliver("bench@bench.test", wire_form(message(n, 1)), SENDER)
        await client.stream.aclose()

    trio.run(run)
    assert server.close() == _expected_wire()


def test_the_wire_corpus_holds_the_corpus_in_wire_form(tmp_path: pathlib.Path) -> None:
    with WireCorpus.build(tmp_path, 2105, 3, workers=2) as corpus:  # two chunks and a short one
        assert len(corpus) == 2105
        for n in (0, 42, 99, 1999, 2000, 2104):
            assert corpus.wire(n) == wire_form(message(n, 3))
            assert corpus.raw(n) == message(n, 3)
        assert corpus.raw_bytes(0, 2105) == sum(len(message(n, 3)) for n in range(2105))
