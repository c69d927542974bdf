"""Writer intervals from the agents' own transition history (pure).

The agents append one entry per state change to their history in ZooKeeper
(time, node, from_state, to_state, epoch). A node may write from the moment
it enters ACTIVATING (store fenced to its epoch, front ends starting) until it
leaves ACTIVE/ACTIVATING (SUSPENDED stops writes; RELEASING drains). An
interval with no recorded end (the node was killed) is closed by the
evidence that ends it: another node entering ACTIVATING with a higher epoch,
which it may only do after fencing the old one. A node that records leaving
ACTIVE after such a takeover was, by its own account, still a writer: the
checker reports the overlap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from chaos.history import JsonValue

WRITER_STATES = frozenset({"activating", "active"})


@dataclass(frozen=True)
class Transition:
    time: float
    node: str
    from_state: str
    to_state: str
    epoch: int


@dataclass(frozen=True)
class WriterInterval:
    node: str
    epoch: int
    start: float
    end: float | None  # None: still a writer when the history was read

    def to_json(self) -> dict[str, JsonValue]:
        return {"node": self.node, "epoch": self.epoch, "start": self.start, "end": self.end}


def writer_intervals(entries: Iterable[Transition]) -> list[WriterInterval]:
    ordered = sorted(entries, key=lambda e: e.time)
    open_since: dict[str, tuple[float, int]] = {}
    # Intervals closed by someone else's takeover, by node: their own later record may extend them.
    closed_by_takeover: dict[str, int] = {}
    intervals: list[WriterInterval] = []
    for e in ordered:
        was_writer = e.node in open_since
        is_writer = e.to_state in WRITER_STATES
        if e.node in closed_by_takeover and e.from_state in WRITER_STATES:
            # The fenced node says it was still a writer until now.
            k = closed_by_takeover.pop(e.node)
            old = intervals[k]
            intervals[k] = WriterInterval(old.node, old.epoch, old.start, e.time)
            if not is_writer:
                continue
        closed_by_takeover.pop(e.node, None)
        if is_writer and not was_writer:
            if e.to_state == "activating":
                # A takeover: every other open writer with a lower epoch is fenced by now.
                for other, (start, epoch) in list(open_since.items()):
                    if other != e.node and epoch < e.epoch:
                        closed_by_takeover[other] = len(intervals)
                        intervals.append(WriterInterval(other, epoch, start, e.time))
                        del open_since[other]
            open_since[e.node] = (e.time, e.epoch)
        elif was_writer and not is_writer:
            start, epoch = open_since.pop(e.node)
            intervals.append(WriterInterval(e.node, epoch, start, e.time))
    intervals += [WriterInterval(node, epoch, start, None) for node, (start, epoch) in open_since.items()]
    return sorted(intervals, key=lambda i: i.start)
