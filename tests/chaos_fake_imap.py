"""A tiny threaded IMAP server for testing the chaos workload without the real imapd.

It speaks just what the workload sends (plain text, LOGIN, CREATE, SELECT,
EXAMINE, STATUS, APPEND with APPENDUID, UID FETCH/STORE/EXPUNGE, IDLE,
LOGOUT) and has deliberate faults: dropping the connection after an APPEND
commits (an unknown outcome) and acknowledging an APPEND it never stores (a
lost write), so tests can see the whole pipeline catch them.
"""

from __future__ import annotations

import re
import socketserver
import threading
from dataclasses import dataclass, field

_HEADER = re.compile(rb"^X-Chaos-Id:[^\r\n]*\r\n", re.IGNORECASE | re.MULTILINE)


@dataclass
class Mailbox:
    uidvalidity: int
    uidnext: int = 1
    modseq: int = 1
    messages: dict[int, tuple[bytes, set[str]]] = field(default_factory=dict)


@dataclass
class FakeState:
    mailboxes: dict[str, Mailbox] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    appends: int = 0
    drop_after_commit_every: int = 0  # every Nth APPEND: commit, then close without replying
    lose_every: int = 0  # every Nth APPEND: reply OK without storing
    truncate_every: int = 0  # every Nth APPEND: store all but the last 10 bytes (a torn write)

    def mailbox(self, name: str) -> Mailbox | None:
        return self.mailboxes.get("INBOX" if name.upper() == "INBOX" else name)


def _unquote(token: str) -> str:
    return token[1:-1].replace('\\"', '"').replace("\\\\", "\\") if token.startswith('"') else token


class _Handler(socketserver.StreamRequestHandler):
    server: FakeImapServer

    def send(self, line: str | bytes) -> None:
        self.wfile.write((line.encode() if isinstance(line, str) else line) + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        state = self.server.state
        selected: str | None = None
        self.send("* OK fake chaos IMAP ready")
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            line = raw.rstrip(b"\r\n").decode()
            tag, _, rest = line.partition(" ")
            cmd, _, args = rest.partition(" ")
            cmd = cmd.upper()
            if cmd == "UID":
                sub, _, args = args.partition(" ")
                cmd = "UID " + sub.upper()
            if cmd == "CAPABILITY":
                self.send("* CAPABILITY IMAP4rev1 UIDPLUS IDLE CONDSTORE")
            elif cmd == "LOGIN":
                pass
            elif cmd == "LOGOUT":
                self.send("* BYE")
                self.send(f"{tag} OK LOGOUT")
                return
            elif cmd == "CREATE":
                name = _unquote(args)
                with state.lock:
                    if state.mailbox(name) is not None:
                        self.send(f"{tag} NO [ALREADYEXISTS] exists")
                        continue
                    state.mailboxes[name] = Mailbox(uidvalidity=1000 + len(state.mailboxes))
            elif cmd in ("SELECT", "EXAMINE", "STATUS"):
                name = _unquote(args.split(" (")[0])
                with state.lock:
                    mb = state.mailbox(name)
                    if mb is None:
                        self.send(f"{tag} NO [NONEXISTENT] no such mailbox")
                        continue
                    if cmd == "STATUS":
                        self.send(
                            f"* STATUS {args.split(' (')[0]} (UIDNEXT {mb.uidnext} UIDVALIDITY {mb.uidvalidity} "
                            f"HIGHESTMODSEQ {mb.modseq} MESSAGES {len(mb.messages)})"
                        )
                    else:
                        selected = name
                        self.send(f"* {len(mb.messages)} EXISTS")
                        self.send(f"* OK [UIDVALIDITY {mb.uidvalidity}] ok")
                        self.send(f"* OK [UIDNEXT {mb.uidnext}] ok")
                        self.send(f"* OK [HIGHESTMODSEQ {mb.modseq}] ok")
            elif cmd == "APPEND":
                m = re.match(r'^(".*?"|\S+).*\{(\d+)\}$', args)
                if m is None:
                    self.send(f"{tag} BAD append syntax")
                    continue
                self.send("+ go ahead")
                data = self.rfile.read(int(m.group(2)))
                self.rfile.readline()
                with state.lock:
                    mb = state.mailbox(_unquote(m.group(1)))
                    if mb is None:
                        self.send(f"{tag} NO [TRYCREATE] no such mailbox")
                        continue
                    state.appends += 1
                    uid = mb.uidnext
                    mb.uidnext += 1
                    mb.modseq += 1
                    lose = state.lose_every and state.appends % state.lose_every == 0
                    if state.truncate_every and state.appends % state.truncate_every == 0:
                        data = data[:-10]
                    if not lose:
                        mb.messages[uid] = (data, set())
                    drop = state.drop_after_commit_every and state.appends % state.drop_after_commit_every == 0
                if drop:
                    return  # committed, never acknowledged
                self.send(f"{tag} OK [APPENDUID {mb.uidvalidity} {uid}] APPEND completed")
                continue
            elif cmd in ("UID FETCH", "UID STORE", "UID EXPUNGE"):
                uidset, _, items = args.partition(" ")
                with state.lock:
                    mb = state.mailbox(selected or "")
                    if mb is None:
                        self.send(f"{tag} BAD nothing selected")
                        continue
                    uids = sorted(mb.messages)
                    if uidset != "1:*":
                        uids = [u for u in uids if u == int(uidset)]
                    for seq, uid in enumerate(uids, 1):
                        data, flags = mb.messages[uid]
                        if cmd == "UID FETCH":
                            hm = _HEADER.search(data)
                            header = (hm.group(0) if hm else b"") + b"\r\n"
                            self.send(
                                f"* {seq} FETCH (UID {uid} RFC822.SIZE {len(data)} BODY[HEADER.FIELDS (X-CHAOS-ID)] "
                                f"{{{len(header)}}}".encode()
                                + b"\r\n"
                                + header
                                + b")"
                            )
                        elif cmd == "UID STORE":
                            mode, _, flag_list = items.partition(" ")
                            names = set(flag_list.strip("()").split())
                            if mode.upper().startswith("+"):
                                flags |= names
                            else:
                                flags -= names
                            mb.modseq += 1
                        elif "\\Deleted" in flags:
                            del mb.messages[uid]
                            mb.modseq += 1
                            self.send(f"* {seq} EXPUNGE")
            elif cmd == "IDLE":
                self.send("+ idling")
                if self.rfile.readline().strip().upper() != b"DONE":
                    self.send(f"{tag} BAD expected DONE")
                    continue
            elif cmd != "NOOP":
                self.send(f"{tag} BAD unknown command {cmd}")
                continue
            self.send(f"{tag} OK {cmd} completed")


class FakeImapServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: FakeState | None = None) -> None:
        self.state = state or FakeState()
        super().__init__(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def __enter__(self) -> FakeImapServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(5)
