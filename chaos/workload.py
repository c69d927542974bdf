"""The chaos workload: concurrent IMAP clients (and LMTP deliveries) that record every operation.

Each client is a thread with its own imaplib connection through the service
address (the floating IP). It loops, bounded in count and time, over:

- APPEND of a uniquely tagged message (X-Chaos-Id and Message-ID headers);
  the APPENDUID response code gives its UID and UIDVALIDITY;
- UID FETCH of one of its own acknowledged messages (checks the tag);
- UID STORE of harmless flags on its own messages (never \\Deleted);
- a scratch cycle: APPEND (marked scratch) + UID STORE +FLAGS (\\Deleted) +
  UID EXPUNGE of that UID only, so expunges never touch checked messages;
- STATUS (UIDNEXT UIDVALIDITY HIGHESTMODSEQ) samples;
- IDLE for a moment, then DONE;
- LMTP delivery of a tagged message to the user's INBOX, when enabled.

A reply ends the op `ok` or `fail` (NO/BAD, LMTP 4xx/5xx); a connection that
dies or times out before the reply ends it `unknown`, and the client
reconnects (bounded back-off). CLOSE is never sent: it would expunge.

The history never holds message bodies or the password.
"""

from __future__ import annotations

import imaplib
import random
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from chaos.history import EventType, HistoryWriter, JsonValue, Op

CHAOS_DOMAIN = "chaos.mailha.test"
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]", re.IGNORECASE)
_UID = re.compile(rb"UID (\d+)", re.IGNORECASE)
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)", re.IGNORECASE)
_CHAOS_ID = re.compile(rb"X-Chaos-Id:\s*(\S+)", re.IGNORECASE)
_STATUS_ITEM = re.compile(rb"(UIDNEXT|UIDVALIDITY|HIGHESTMODSEQ|MESSAGES) (\d+)", re.IGNORECASE)


class WorkloadError(Exception):
    """Root of the workload's errors."""


@dataclass(frozen=True)
class WorkloadConfig:
    host: str
    port: int = 143
    tls: str = "starttls"  # "starttls", "ssl" or "plain"
    user: str = "chaos"
    password: str = "chaos"
    run_id: str = "run"
    mailboxes: tuple[str, ...] = ("chaos-a", "chaos-b")
    clients: int = 4
    op_timeout: float = 10.0
    max_ops_per_client: int = 100_000
    lmtp_port: int | None = None  # LMTP deliveries when set
    lmtp_rcpt: str = "chaos@mailha.test"
    big_append_bytes: int = 0  # > 0: client 0 sends every 4th append with this many bytes
    seed: int = 1
    imap: bool = True  # False: LMTP deliveries only (no IMAP front end to talk to)
    deliver_bytes: int = 0  # size of LMTP deliveries (0: small)
    deliver_weight: float = 0.08  # share of LMTP deliveries among a client's operations
    # Like an MTA's queue: a delivery whose outcome was not seen (connection
    # lost after DATA, nobody listening, 4xx) is retried with the same bytes
    # until a definite reply; only the whole delivery is one operation.
    mta_retry: bool = False
    mta_retry_for: float = 60.0  # seconds before the queue gives up (then: unknown)


@dataclass
class _Known:
    """Messages this client appended and saw acknowledged, per mailbox: uid -> chaos id."""

    by_mailbox: dict[str, dict[int, str]] = field(default_factory=dict)

    def add(self, mailbox: str, uid: int, chaos_id: str) -> None:
        self.by_mailbox.setdefault(mailbox, {})[uid] = chaos_id

    def pick(self, rng: random.Random, mailbox: str) -> tuple[int, str] | None:
        msgs = self.by_mailbox.get(mailbox)
        if not msgs:
            return None
        uid = rng.choice(list(msgs))
        return uid, msgs[uid]


class _Died(Exception):
    """The connection died before the reply: the outcome is unknown."""


class _Refused(Exception):
    """The server answered NO or BAD: the operation definitely did not happen."""


MTA_RETRY_INTERVAL = 0.1
RECONNECT_INTERVAL = 0.05


def _permanent(refused: Exception) -> bool:
    """A 5xx reply (e.g. "DATA 552"): the delivery failed for good."""
    return any(word.isdigit() and word.startswith("5") for word in str(refused).split())


def _tls_context() -> ssl.SSLContext:
    # The demo certificate is self-signed; the workload checks data, not identity.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connect_imap(cfg: WorkloadConfig) -> imaplib.IMAP4:
    """A logged-in connection (raises OSError / imaplib errors)."""
    conn: imaplib.IMAP4
    if cfg.tls == "ssl":
        conn = imaplib.IMAP4_SSL(cfg.host, cfg.port, ssl_context=_tls_context(), timeout=cfg.op_timeout)
    else:
        conn = imaplib.IMAP4(cfg.host, cfg.port, timeout=cfg.op_timeout)
        if cfg.tls == "starttls":
            conn.starttls(_tls_context())
    conn.login(cfg.user, cfg.password)
    return conn


def trailer(chaos_id: str) -> bytes:
    """The last line of every workload message: a stored copy without it is torn."""
    return f"chaos-end {chaos_id}\r\n".encode()


def tagged_message(chaos_id: str, size: int = 0) -> bytes:
    """An RFC 5322 message whose identity is its X-Chaos-Id, padded to about `size` bytes."""
    body = b"chaos workload message\r\n"
    if size > len(body):
        line = b"x" * 76 + b"\r\n"
        body += line * ((size - len(body)) // len(line) + 1)
    body += trailer(chaos_id)
    return (
        f"From: chaos@{CHAOS_DOMAIN}\r\nTo: chaos@mailha.test\r\nSubject: chaos {chaos_id}\r\n"
        f"Message-ID: <{chaos_id}@{CHAOS_DOMAIN}>\r\nX-Chaos-Id: {chaos_id}\r\n\r\n"
    ).encode() + body


def _check(typ: str, data: Sequence[object]) -> list[object]:
    if typ != "OK":
        text = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")[:200]
        raise _Refused(f"{typ} {text}")
    return list(data)


def _call(fn: Callable[[], tuple[str, Sequence[object]]]) -> list[object]:
    """Run one imaplib command, turning its failure modes into _Died / _Refused."""
    try:
        typ, data = fn()
    except (imaplib.IMAP4.abort, OSError, EOFError) as exc:
        raise _Died(type(exc).__name__) from None
    except imaplib.IMAP4.error as exc:
        raise _Refused(str(exc)[:200]) from None
    return _check(typ, data)


def parse_status(data: list[object]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in data:
        if isinstance(item, bytes):
            for key, value in _STATUS_ITEM.findall(item):
                out[key.decode().lower()] = int(value)
    return out


def parse_fetch_ids(data: list[object]) -> list[tuple[int, str | None, int | None]]:
    """(uid, X-Chaos-Id or None, RFC822.SIZE or None) per message of a UID FETCH of the X-Chaos-Id field."""
    found: list[tuple[int, str | None, int | None]] = []
    for item in data:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], bytes):
            m = _UID.search(item[0])
            if m is None:
                continue
            literal = item[1] if isinstance(item[1], bytes) else b""
            cid = _CHAOS_ID.search(literal)
            size = _SIZE.search(item[0])
            found.append(
                (int(m.group(1)), cid.group(1).decode() if cid else None, int(size.group(1)) if size else None)
            )
        elif isinstance(item, bytes) and _UID.search(item):
            # A message whose header field is empty comes back without a literal.
            m2 = _UID.search(item)
            size2 = _SIZE.search(item)
            if m2 is not None and b"BODY[" in item.upper():
                found.append((int(m2.group(1)), None, int(size2.group(1)) if size2 else None))
    return found


class ImapClient:
    """One workload client; `run` returns when the deadline or the op budget is reached."""

    def __init__(self, cfg: WorkloadConfig, history: HistoryWriter, number: int, deadline: float) -> None:
        self.cfg = cfg
        self.history = history
        self.number = number
        self.name = f"imap-{number}"
        self.deadline = deadline
        self.rng = random.Random(cfg.seed * 1000 + number)
        self.known = _Known()
        self.conn: imaplib.IMAP4 | None = None
        self.selected: str | None = None
        self.seq = 0
        self.stop = threading.Event()
        self.no_uid_expunge = False

    # -- connection ----------------------------------------------------------

    def _drop(self) -> None:
        conn, self.conn, self.selected = self.conn, None, None
        if conn is not None:
            try:
                conn.shutdown()
            except (OSError, imaplib.IMAP4.error):
                pass

    def _ensure(self, mailbox: str) -> imaplib.IMAP4 | None:
        """A connection with `mailbox` selected, or None when the deadline passed first.
        Reconnects like the client of `mailha bench failover`: at once, then
        every 50 ms, so the report's unavailability is what a client sees."""
        delay = 0.0
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            try:
                if self.conn is None:
                    self.conn = connect_imap(self.cfg)
                if self.selected != mailbox:
                    _call(partial(self.conn.select, _quote(mailbox)))
                    self.selected = mailbox
                return self.conn
            except (OSError, imaplib.IMAP4.error, _Died, _Refused, EOFError):
                self._drop()
                self.stop.wait(delay)
                delay = RECONNECT_INTERVAL
        return None

    # -- operations ----------------------------------------------------------

    def _op(self, f: Op, value: dict[str, JsonValue], body: Callable[[], dict[str, JsonValue]]) -> bool:
        """Record an operation around `body`; True when it was acknowledged."""
        op_id = self.history.invoke(self.name, f, value)
        try:
            reply = body()
        except _Refused as exc:
            self.history.complete(self.name, f, op_id, EventType.FAIL, {"error": str(exc)})
            return False
        except (_Died, OSError, EOFError, imaplib.IMAP4.abort) as exc:
            self.history.complete(self.name, f, op_id, EventType.UNKNOWN, {"error": str(exc) or type(exc).__name__})
            self._drop()
            return False
        self.history.complete(self.name, f, op_id, EventType.OK, reply)
        return True

    def _next_id(self) -> str:
        self.seq += 1
        return f"{self.cfg.run_id}-c{self.number}-{self.seq}"

    def append(self, mailbox: str, *, scratch: bool = False) -> tuple[int, str] | None:
        conn = self._ensure(mailbox)
        if conn is None:
            return None
        chaos_id = self._next_id()
        # Only client 0 sends the big ones, so one slow 20 MiB upload never stalls every client.
        big = self.cfg.big_append_bytes and self.number == 0 and self.seq % 4 == 0 and not scratch
        size = self.cfg.big_append_bytes if big else 0
        message = tagged_message(chaos_id, size)
        result: dict[str, int] = {}

        def body() -> dict[str, JsonValue]:
            data = _call(lambda: conn.append(_quote(mailbox), "", "", message))
            for item in data:
                m = _APPENDUID.search(item) if isinstance(item, bytes) else None
                if m is not None:
                    result["uidvalidity"], result["uid"] = int(m.group(1)), int(m.group(2))
            return dict(result)

        value: dict[str, JsonValue] = {
            "chaos_id": chaos_id,
            "mailbox": mailbox,
            "scratch": scratch,
            "bytes": len(message),
        }
        if self._op(Op.APPEND, value, body) and "uid" in result:
            if not scratch:
                self.known.add(mailbox, result["uid"], chaos_id)
            return result["uid"], chaos_id
        return None

    def fetch(self, mailbox: str) -> None:
        picked = self.known.pick(self.rng, mailbox)
        conn = self._ensure(mailbox) if picked else None
        if conn is None or picked is None:
            return
        uid, chaos_id = picked

        def body() -> dict[str, JsonValue]:
            data = _call(lambda: conn.uid("FETCH", str(uid), "(UID FLAGS BODY.PEEK[HEADER.FIELDS (X-CHAOS-ID)])"))
            found = parse_fetch_ids(data)
            return {"found": [cid for _, cid, _ in found if cid is not None]}

        self._op(Op.FETCH, {"mailbox": mailbox, "uid": uid, "expected": chaos_id}, body)

    def store(self, mailbox: str) -> None:
        picked = self.known.pick(self.rng, mailbox)
        conn = self._ensure(mailbox) if picked else None
        if conn is None or picked is None:
            return
        uid = picked[0]
        mode = self.rng.choice(("+FLAGS", "-FLAGS"))
        flags = self.rng.choice(("(\\Seen)", "(\\Flagged)", "($Chaos)"))

        def body() -> dict[str, JsonValue]:
            _call(lambda: conn.uid("STORE", str(uid), mode, flags))
            return {}

        self._op(Op.STORE, {"mailbox": mailbox, "uid": uid, "mode": mode, "flags": flags}, body)

    def scratch_cycle(self, mailbox: str) -> None:
        if self.no_uid_expunge:
            return
        appended = self.append(mailbox, scratch=True)
        conn = self._ensure(mailbox) if appended else None
        if conn is None or appended is None:
            return
        uid, chaos_id = appended

        def flag() -> dict[str, JsonValue]:
            _call(lambda: conn.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)"))
            return {}

        if not self._op(Op.STORE, {"mailbox": mailbox, "uid": uid, "mode": "+FLAGS", "flags": "(\\Deleted)"}, flag):
            return

        def expunge() -> dict[str, JsonValue]:
            try:
                _call(lambda: conn.uid("EXPUNGE", str(uid)))
            except _Refused as exc:
                if "BAD" in str(exc) or "unknown" in str(exc).lower():
                    self.no_uid_expunge = True  # never fall back to EXPUNGE: it could hit others' scratch
                raise
            return {}

        self._op(Op.EXPUNGE, {"mailbox": mailbox, "uids": [uid], "chaos_ids": [chaos_id]}, expunge)

    def status(self, mailbox: str) -> None:
        conn = self._ensure(mailbox)
        if conn is None:
            return

        def body() -> dict[str, JsonValue]:
            data = _call(lambda: conn.status(_quote(mailbox), "(UIDNEXT UIDVALIDITY HIGHESTMODSEQ MESSAGES)"))
            return dict(parse_status(data))

        self._op(Op.STATUS, {"mailbox": mailbox}, body)

    def idle(self, mailbox: str) -> None:
        conn = self._ensure(mailbox)
        if conn is None:
            return
        tag = f"CHI{self.seq}".encode()
        pause = self.rng.uniform(0.1, 0.6)

        def body() -> dict[str, JsonValue]:
            try:
                conn.send(tag + b" IDLE\r\n")
                line = conn.readline()
                if not line:
                    raise _Died("EOF")
                if not line.startswith(b"+"):
                    raise _Refused(line.decode(errors="replace").strip()[:200])
                time.sleep(pause)
                conn.send(b"DONE\r\n")
                while True:
                    line = conn.readline()
                    if not line:
                        raise _Died("EOF")
                    if line.startswith(tag + b" "):
                        status = line[len(tag) + 1 :].split(b" ", 1)[0]
                        if status.upper() != b"OK":
                            raise _Refused(line.decode(errors="replace").strip()[:200])
                        return {}
            except (imaplib.IMAP4.abort, OSError) as exc:
                raise _Died(type(exc).__name__) from None

        self._op(Op.IDLE, {"mailbox": mailbox}, body)

    def deliver(self) -> None:
        port = self.cfg.lmtp_port
        if port is None:
            return
        chaos_id = self._next_id()
        message = tagged_message(chaos_id, self.cfg.deliver_bytes)
        sent_data = False

        def body() -> dict[str, JsonValue]:
            if not self.cfg.mta_retry:
                return attempt()
            give_up = time.monotonic() + self.cfg.mta_retry_for
            attempts = 0
            while True:
                attempts += 1
                try:
                    return {**attempt(), "attempts": attempts}
                except (_Died, _Refused) as exc:
                    if isinstance(exc, _Refused) and _permanent(exc):
                        raise  # 5xx: an MTA bounces, it does not retry
                    if self.stop.is_set() or time.monotonic() >= give_up:
                        if sent_data and isinstance(exc, _Refused):
                            # An earlier attempt may have been stored: not a definite failure.
                            raise _Died(f"gave up after {attempts} attempts: {exc}") from None
                        raise
                self.stop.wait(MTA_RETRY_INTERVAL)

        def attempt() -> dict[str, JsonValue]:
            nonlocal sent_data
            lmtp = smtplib.LMTP(timeout=self.cfg.op_timeout)
            try:
                # Until DATA is sent nothing can have been delivered: errors are definite failures.
                try:
                    code, _ = lmtp.connect(self.cfg.host, port)
                    if code != 220:
                        raise _Refused(f"greeting {code}")
                    lmtp.ehlo_or_helo_if_needed()
                    code, _ = lmtp.mail(f"chaos@{CHAOS_DOMAIN}")
                    if code != 250:
                        raise _Refused(f"MAIL {code}")
                    code, _ = lmtp.rcpt(self.cfg.lmtp_rcpt)
                    if code not in (250, 251):
                        raise _Refused(f"RCPT {code}")
                except (OSError, smtplib.SMTPException) as exc:
                    raise _Refused(f"before DATA: {type(exc).__name__}") from None
                sent_data = True
                try:
                    code, _ = lmtp.data(message)
                except smtplib.SMTPDataError as exc:
                    raise _Refused(f"DATA {exc.smtp_code}") from None
                except (OSError, smtplib.SMTPException) as exc:
                    raise _Died(type(exc).__name__) from None
                if code != 250:
                    raise _Refused(f"DATA {code}")
                return {}
            finally:
                try:
                    lmtp.close()
                except OSError:
                    pass

        if not self._op(Op.DELIVER, {"chaos_id": chaos_id, "mailbox": "INBOX"}, body) and not sent_data:
            self.stop.wait(0.2)  # nobody listens: do not spin

    # -- the loop ------------------------------------------------------------

    def run(self) -> None:
        choices: list[tuple[float, Callable[[str], None]]] = []
        if self.cfg.imap:
            choices += [
                (0.40, lambda mb: self.append(mb) and None),
                (0.15, self.fetch),
                (0.12, self.store),
                (0.10, self.scratch_cycle),
                (0.10, self.status),
                (0.05, self.idle),
            ]
        if self.cfg.lmtp_port is not None:
            choices.append((self.cfg.deliver_weight, lambda mb: self.deliver()))
        weights = [w for w, _ in choices]
        try:
            for _ in range(self.cfg.max_ops_per_client):
                if self.stop.is_set() or time.monotonic() >= self.deadline:
                    break
                mailbox = self.rng.choice(self.cfg.mailboxes)
                action = self.rng.choices([a for _, a in choices], weights)[0]
                action(mailbox)
        finally:
            self._drop()


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def prepare_mailboxes(cfg: WorkloadConfig, timeout: float = 60.0) -> None:
    """CREATE the run's mailboxes (an existing one is fine)."""
    if not cfg.imap:
        return
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            conn = connect_imap(cfg)
            try:
                for mailbox in cfg.mailboxes:
                    typ, _ = conn.create(_quote(mailbox))
                    if typ != "OK":
                        _call(partial(conn.select, _quote(mailbox)))  # exists already?
                return
            finally:
                conn.logout()
        except (OSError, imaplib.IMAP4.error, _Died, _Refused, EOFError) as exc:
            last = exc
            time.sleep(0.5)
    raise WorkloadError(f"could not create the workload's mailboxes within {timeout:.0f} s: {last}")


def final_read(cfg: WorkloadConfig, history: HistoryWriter, mailboxes: tuple[str, ...], timeout: float) -> bool:
    """After healing: read back every mailbox's UIDs and tags into one FINAL_READ op each."""
    deadline = time.monotonic() + timeout
    done: set[str] = set()
    last: str = ""
    while time.monotonic() < deadline and len(done) < len(mailboxes):
        try:
            conn = connect_imap(cfg)
        except (OSError, imaplib.IMAP4.error, EOFError) as exc:
            last = f"connect: {exc}"
            time.sleep(0.5)
            continue
        try:
            for mailbox in mailboxes:
                if mailbox in done:
                    continue
                op_id = history.invoke("final", Op.FINAL_READ, {"mailbox": mailbox})
                try:
                    _call(partial(conn.select, _quote(mailbox), readonly=True))
                    reply: dict[str, JsonValue] = {"mailbox": mailbox}
                    for key in ("UIDVALIDITY", "UIDNEXT", "HIGHESTMODSEQ"):
                        _, vals = conn.response(key)
                        if vals and isinstance(vals[0], bytes) and vals[0].isdigit():
                            reply[key.lower()] = int(vals[0])
                    data = _call(
                        partial(conn.uid, "FETCH", "1:*", "(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (X-CHAOS-ID)])")
                    )
                    found = parse_fetch_ids([d for d in data if d is not None])
                    # Other runs' deliveries may share INBOX: only this run's tags (and untagged
                    # messages, which nobody should have written) are judged.
                    mine = [(u, c, n) for u, c, n in found if c is None or c.startswith(cfg.run_id + "-")]
                    reply["messages"] = [{"uid": u, "chaos_id": c, "size": n} for u, c, n in mine]
                    reply["foreign"] = len(found) - len(mine)
                except (_Died, _Refused) as exc:
                    history.complete("final", Op.FINAL_READ, op_id, EventType.UNKNOWN, {"error": str(exc)})
                    last = f"{mailbox}: {exc}"
                    raise
                history.complete("final", Op.FINAL_READ, op_id, EventType.OK, reply)
                done.add(mailbox)
        except (_Died, _Refused):
            time.sleep(0.5)
        finally:
            try:
                conn.logout()
            except (OSError, imaplib.IMAP4.error, EOFError):
                pass
    if len(done) < len(mailboxes):
        history.record("final", Op.FINAL_READ, {"error": f"gave up after {timeout:.0f} s: {last}"}, EventType.FAIL)
        return False
    return True


def lmtp_available(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Workload:
    """Runs cfg.clients clients in threads until `seconds` pass or `stop()` is called."""

    def __init__(self, cfg: WorkloadConfig, history: HistoryWriter) -> None:
        self.cfg = cfg
        self.history = history
        self.clients: list[ImapClient] = []
        self.threads: list[threading.Thread] = []

    def start(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        for n in range(self.cfg.clients):
            client = ImapClient(self.cfg, self.history, n, deadline)
            thread = threading.Thread(target=client.run, name=client.name, daemon=True)
            self.clients.append(client)
            self.threads.append(thread)
            thread.start()

    def stop(self) -> None:
        for client in self.clients:
            client.stop.set()

    def join(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, end - time.monotonic()))

    def mailboxes(self) -> tuple[str, ...]:
        own = self.cfg.mailboxes if self.cfg.imap else ()
        return (*own, "INBOX") if self.cfg.lmtp_port is not None else own
