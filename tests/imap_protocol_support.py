"""Helpers for the imap protocol core tests: drive a parser to quiescence."""

from __future__ import annotations

from imapd.protocol import events as ev
from imapd.protocol.parser import CommandParser


def drain(parser: CommandParser, *, accept: bool = True) -> list[ev.Event]:
    """All events until NEED_DATA; synchronizing literals are accepted (or rejected)."""
    out: list[ev.Event] = []
    while True:
        event = parser.next_event()
        if event is ev.NEED_DATA:
            return out
        out.append(event)
        if isinstance(event, ev.ContinuationNeeded):
            if accept:
                parser.accept_literal()
            else:
                parser.reject_literal()


def feed(parser: CommandParser, data: bytes, *, accept: bool = True) -> list[ev.Event]:
    parser.receive_data(data)
    return drain(parser, accept=accept)


def feed_bytewise(parser: CommandParser, data: bytes) -> list[ev.Event]:
    """Feed one byte at a time, draining after each."""
    out: list[ev.Event] = []
    for i in range(len(data)):
        out.extend(feed(parser, data[i : i + 1]))
    return out


def merge_chunks(events: list[ev.Event]) -> list[ev.Event]:
    """Join consecutive AppendChunk events so chunking does not matter in comparisons."""
    out: list[ev.Event] = []
    for event in events:
        if isinstance(event, ev.AppendChunk) and out and isinstance(out[-1], ev.AppendChunk):
            out[-1] = ev.AppendChunk(event.tag, out[-1].data + event.data)
        else:
            out.append(event)
    return out
