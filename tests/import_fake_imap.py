"""A tiny read-only IMAP server for the IMAP import tests.

It answers what imapclient sends for an export: CAPABILITY, LOGIN, LIST,
STATUS, SELECT/EXAMINE, UID SEARCH, UID FETCH (FLAGS INTERNALDATE BODY[]),
NOOP, LOGOUT. Folders use "." as the hierarchy delimiter and may be
\\Noselect, so the importer's name mapping and folder skipping are exercised.
"""

from __future__ import annotations

import re
import socketserver
import threading
from dataclasses import dataclass, field


@dataclass
class FakeMessage:
    data: bytes
    flags: tuple[str, ...]
    internal_date: str  # IMAP date-time, e.g. "28-Nov-2026 17:41:19 +0100"


@dataclass
class FakeFolder:
    uidvalidity: int
    messages: dict[int, FakeMessage] = field(default_factory=dict)
    noselect: bool = False

    def add(self, message: FakeMessage) -> int:
        uid = max(self.messages, default=0) + 1
        self.messages[uid] = message
        return uid


@dataclass
class FakeAccount:
    user: str
    password: str
    folders: dict[str, FakeFolder] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    fetches: int = 0  # messages sent in UID FETCH responses


_COMMAND = re.compile(r"^(\S+) (UID )?(\S+) ?(.*)$", re.IGNORECASE)


def _unquote(text: str) -> str:
    text = text.strip()
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text


def _uids(spec: str, existing: list[int]) -> list[int]:
    out: list[int] = []
    top = max(existing, default=0)
    for part in spec.split(","):
        lo, _, hi = part.partition(":")
        a = top if lo == "*" else int(lo)
        b = a if not hi else (top if hi == "*" else int(hi))
        a, b = min(a, b), max(a, b)
        out += [u for u in existing if a <= u <= b and u not in out]
    return sorted(out)


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def send(self, data: str | bytes) -> None:
        self.wfile.write(data.encode() if isinstance(data, str) else data)

    def handle(self) -> None:
        account = self.server.account
        selected: FakeFolder | None = None
        self.send("* OK [CAPABILITY IMAP4rev1] fake source ready\r\n")
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            m = _COMMAND.match(raw.decode().rstrip("\r\n"))
            if not m:
                self.send("* BAD parse\r\n")
                continue
            tag, uid, cmd, args = m[1], bool(m[2]), m[3].upper(), m[4]
            with account.lock:
                if cmd == "CAPABILITY":
                    self.send(f"* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n")
                elif cmd == "LOGIN":
                    user, password = (_unquote(a) for a in re.findall(r'"(?:[^"\\]|\\.)*"|\S+', args))
                    ok = (user, password) == (account.user, account.password)
                    self.send(f"{tag} OK logged in\r\n" if ok else f"{tag} NO [AUTHENTICATIONFAILED] bad\r\n")
                elif cmd == "LIST":
                    for name, folder in account.folders.items():
                        attrs = "\\Noselect" if folder.noselect else ""
                        self.send(f'* LIST ({attrs}) "." "{name}"\r\n')
                    self.send(f"{tag} OK list done\r\n")
                elif cmd == "STATUS":
                    name = _unquote(args.rsplit(" (", 1)[0])
                    folder = account.folders[name]
                    self.send(f'* STATUS "{name}" (MESSAGES {len(folder.messages)})\r\n{tag} OK status\r\n')
                elif cmd in ("SELECT", "EXAMINE"):
                    selected = account.folders.get(_unquote(args))
                    if selected is None or selected.noselect:
                        self.send(f"{tag} NO no such folder\r\n")
                        continue
                    nxt = max(selected.messages, default=0) + 1
                    self.send(
                        f"* {len(selected.messages)} EXISTS\r\n* OK [UIDVALIDITY {selected.uidvalidity}] v\r\n"
                        f"* OK [UIDNEXT {nxt}] n\r\n* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft)\r\n"
                        f"{tag} OK [READ-ONLY] selected\r\n"
                    )
                elif cmd == "SEARCH" and uid and selected is not None:
                    self.send(f"* SEARCH {' '.join(str(u) for u in sorted(selected.messages))}\r\n{tag} OK done\r\n")
                elif cmd == "FETCH" and uid and selected is not None:
                    order = sorted(selected.messages)
                    for u in _uids(args.split(" ", 1)[0], order):
                        msg = selected.messages[u]
                        account.fetches += 1
                        self.send(
                            f"* {order.index(u) + 1} FETCH (UID {u} FLAGS ({' '.join(msg.flags)}) "
                            f'INTERNALDATE "{msg.internal_date}" BODY[] {{{len(msg.data)}}}\r\n'.encode()
                            + msg.data
                            + b")\r\n"
                        )
                    self.send(f"{tag} OK fetched\r\n")
                elif cmd == "NOOP":
                    self.send(f"{tag} OK done\r\n")
                elif cmd == "LOGOUT":
                    self.send(f"* BYE bye\r\n{tag} OK done\r\n")
                    return
                else:
                    self.send(f"{tag} BAD unsupported {cmd}\r\n")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, account: FakeAccount) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.account = account


class FakeImapServer:
    def __init__(self, account: FakeAccount) -> None:
        self.server = _Server(account)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        port: int = self.server.server_address[1]
        return port

    def __enter__(self) -> FakeImapServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
