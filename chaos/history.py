"""The chaos history: every client operation as an invocation and a completion.

One JSON object per line, in the order events happened. Each operation a
client performs is written twice: once when it is invoked and once when it
completes, with the same `op_id`:

    {"i": 0, "t": 1.25, "process": "imap-3", "type": "invoke", "f": "append", "op_id": 17,
     "value": {"chaos_id": "c-3-17", "mailbox": "INBOX"}}
    {"i": 1, "t": 1.31, "process": "imap-3", "type": "ok", "f": "append", "op_id": 17,
     "value": {"chaos_id": "c-3-17", "mailbox": "INBOX", "uidvalidity": 9, "uid": 44}}

`type` of a completion is `ok` (the server acknowledged), `fail` (the server
definitely refused: IMAP NO/BAD, LMTP 4xx/5xx) or `unknown` (the connection
died or timed out before the reply: the write may or may not have happened).
Samplers (status, epoch, agent role, floating-IP holders) and the nemesis
write the same pairs, so the checker can order every observation in real time.

`t` is seconds on the monotonic clock since the history began; `wall` is the
Unix time of the event, used only to line up with records that other processes
(the agents' history in ZooKeeper) keep in wall-clock time.

The history holds no message bodies and no passwords.
"""

from __future__ import annotations

import enum
import json
import pathlib
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, TypeAlias

# JSON values as they come back from json.loads.
JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"


class HistoryError(Exception):
    """Root of this package's errors: a malformed history line or record."""


class EventType(enum.Enum):
    INVOKE = "invoke"
    OK = "ok"
    FAIL = "fail"
    UNKNOWN = "unknown"


COMPLETIONS = frozenset({EventType.OK, EventType.FAIL, EventType.UNKNOWN})


class Op(enum.Enum):
    """What an event is about."""

    APPEND = "append"  # IMAP APPEND of a tagged message (value: chaos_id, mailbox, scratch)
    DELIVER = "deliver"  # LMTP delivery of a tagged message (value: chaos_id, mailbox)
    FETCH = "fetch"
    STORE = "store"  # STORE flags on the workload's own messages (never \Deleted on checked ones)
    EXPUNGE = "expunge"  # UID EXPUNGE of scratch messages only (value: uids, chaos_ids)
    IDLE = "idle"
    STATUS = "status"  # sample: mailbox, uidvalidity, uidnext, highestmodseq
    EPOCH = "epoch"  # sample: node, epoch (the store's stored writer epoch)
    AGENT = "agent"  # sample: node, role, epoch (from `mailha status --json`)
    AGENT_HISTORY = "agent_history"  # the agents' own record of active intervals (wall clock)
    VIP = "vip"  # sample: holders (nodes whose namespace holds the floating IP)
    NEMESIS = "nemesis"  # fault: name, phase (inject / heal)
    FINAL_READ = "final_read"  # after healing: mailbox, uidvalidity, messages [{uid, chaos_id}]


# Operations whose effect the checker accounts for message by message.
WRITES = frozenset({Op.APPEND, Op.DELIVER})
# Operations issued by clients (for availability and the ok/fail/unknown counts).
CLIENT_OPS = frozenset({Op.APPEND, Op.DELIVER, Op.FETCH, Op.STORE, Op.EXPUNGE, Op.IDLE})


@dataclass(frozen=True)
class Event:
    index: int
    time: float
    wall: float
    process: str
    type: EventType
    f: Op
    op_id: int
    value: Mapping[str, JsonValue] = field(default_factory=dict)

    # Typed access to value fields; a wrong type is a malformed history.
    def int_(self, key: str) -> int | None:
        v = self.value.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise HistoryError(f"event {self.index}: {key} must be an integer, got {v!r}")
        return v

    def str_(self, key: str) -> str | None:
        v = self.value.get(key)
        if v is None:
            return None
        if not isinstance(v, str):
            raise HistoryError(f"event {self.index}: {key} must be a string, got {v!r}")
        return v

    def bool_(self, key: str) -> bool:
        v = self.value.get(key, False)
        if not isinstance(v, bool):
            raise HistoryError(f"event {self.index}: {key} must be true or false, got {v!r}")
        return v

    def list_(self, key: str) -> list[JsonValue]:
        v = self.value.get(key, [])
        if not isinstance(v, list):
            raise HistoryError(f"event {self.index}: {key} must be a list, got {v!r}")
        return v

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "i": self.index,
            "t": round(self.time, 6),
            "wall": round(self.wall, 6),
            "process": self.process,
            "type": self.type.value,
            "f": self.f.value,
            "op_id": self.op_id,
            "value": dict(self.value),
        }

    @staticmethod
    def from_json(obj: object) -> Event:
        if not isinstance(obj, dict):
            raise HistoryError(f"history record must be an object, got {obj!r}")
        try:
            value = obj.get("value", {})
            if not isinstance(value, dict):
                raise HistoryError(f"record {obj.get('i')}: value must be an object")
            index, op_id = obj["i"], obj["op_id"]
            t, wall, process = obj["t"], obj.get("wall", 0.0), obj["process"]
            if not isinstance(index, int) or not isinstance(op_id, int):
                raise HistoryError(f"record {index!r}: i and op_id must be integers")
            if not isinstance(t, (int, float)) or not isinstance(wall, (int, float)):
                raise HistoryError(f"record {index}: t and wall must be numbers")
            if not isinstance(process, str):
                raise HistoryError(f"record {index}: process must be a string")
            return Event(
                index=index,
                time=float(t),
                wall=float(wall),
                process=process,
                type=EventType(obj["type"]),
                f=Op(obj["f"]),
                op_id=op_id,
                value=value,
            )
        except KeyError as exc:
            raise HistoryError(f"history record lacks {exc.args[0]!r}: {obj!r}") from None
        except ValueError as exc:
            raise HistoryError(f"history record {obj.get('i')!r}: {exc}") from None


@dataclass(frozen=True)
class Operation:
    """An invocation paired with its completion (None while still open)."""

    invoke: Event
    complete: Event | None

    @property
    def f(self) -> Op:
        return self.invoke.f

    @property
    def outcome(self) -> EventType:
        # An operation that never completed (the run ended first) is unknown.
        return self.complete.type if self.complete is not None else EventType.UNKNOWN

    @property
    def start(self) -> float:
        return self.invoke.time

    @property
    def end(self) -> float:
        return self.complete.time if self.complete is not None else float("inf")

    @property
    def value(self) -> Mapping[str, JsonValue]:
        """The completion's value merged over the invocation's."""
        merged = dict(self.invoke.value)
        if self.complete is not None:
            merged.update(self.complete.value)
        return merged

    def event(self) -> Event:
        """The completion if there is one, else the invocation (for typed field access)."""
        if self.complete is None:
            return self.invoke
        return Event(
            index=self.complete.index,
            time=self.complete.time,
            wall=self.complete.wall,
            process=self.complete.process,
            type=self.complete.type,
            f=self.complete.f,
            op_id=self.complete.op_id,
            value=self.value,
        )


def pair(events: Iterable[Event]) -> list[Operation]:
    """Pair invocations with completions by op_id, in invocation order."""
    open_ops: dict[int, Event] = {}
    done: dict[int, Operation] = {}
    order: list[int] = []
    for ev in events:
        if ev.type is EventType.INVOKE:
            if ev.op_id in open_ops or ev.op_id in done:
                raise HistoryError(f"event {ev.index}: op_id {ev.op_id} invoked twice")
            open_ops[ev.op_id] = ev
            order.append(ev.op_id)
        else:
            inv = open_ops.pop(ev.op_id, None)
            if inv is None:
                raise HistoryError(f"event {ev.index}: completion of op_id {ev.op_id} that was not invoked")
            if inv.f is not ev.f or inv.process != ev.process:
                raise HistoryError(f"event {ev.index}: completion does not match invocation {inv.index}")
            done[ev.op_id] = Operation(inv, ev)
    for op_id, inv in open_ops.items():
        done[op_id] = Operation(inv, None)
    return [done[op_id] for op_id in order]


class HistoryWriter:
    """Thread-safe append-only history; every event is flushed as one line."""

    def __init__(self, path: pathlib.Path | None = None) -> None:
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._next_index = 0
        self._next_op = 0
        self._events: list[Event] = []
        self._file: IO[str] | None = path.open("a", encoding="utf-8") if path is not None else None

    def now(self) -> float:
        return time.monotonic() - self._t0

    def _write(self, process: str, type_: EventType, f: Op, op_id: int, value: Mapping[str, JsonValue]) -> Event:
        with self._lock:
            # Rounded as in the file, so the in-memory history equals the one read back.
            now, wall = round(self.now(), 6), round(time.time(), 6)
            ev = Event(self._next_index, now, wall, process, type_, f, op_id, dict(value))
            self._next_index += 1
            self._events.append(ev)
            if self._file is not None:
                self._file.write(json.dumps(ev.to_json(), separators=(",", ":")) + "\n")
                self._file.flush()
            return ev

    def invoke(self, process: str, f: Op, value: Mapping[str, JsonValue] | None = None) -> int:
        with self._lock:
            op_id = self._next_op
            self._next_op += 1
        self._write(process, EventType.INVOKE, f, op_id, value or {})
        return op_id

    def complete(
        self, process: str, f: Op, op_id: int, type_: EventType, value: Mapping[str, JsonValue] | None = None
    ) -> None:
        if type_ not in COMPLETIONS:
            raise HistoryError(f"{type_.value} is not a completion")
        self._write(process, type_, f, op_id, value or {})

    def record(self, process: str, f: Op, value: Mapping[str, JsonValue], type_: EventType = EventType.OK) -> None:
        """An observation with no duration worth measuring: invoke and complete at once."""
        op_id = self.invoke(process, f, value)
        self.complete(process, f, op_id, type_, value)

    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_history(path: pathlib.Path) -> list[Event]:
    return list(parse_lines(path.read_text(encoding="utf-8").splitlines()))


def parse_lines(lines: Iterable[str]) -> Iterator[Event]:
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HistoryError(f"line {n}: not JSON: {exc}") from None
        yield Event.from_json(obj)
