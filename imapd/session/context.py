"""What every session of one imapd process shares: store, watch hub, limits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import trio

from imapd.account_hub import SUBSCRIBER_BUFFER as NOTIFY_BUFFER
from imapd.memory_release import IdleRelease
from imapd.session import sort_key_cache
from imapd.session.abuse_limits import ConnectionCap, LoginThrottle
from imapd.session.envelope_cache import DEFAULT_MAX_BYTES, EnvelopeCache
from imapd.session.sort_key_cache import SortKeyCache
from imapd.store_client import StoreClient
from imapd.watch_hub import LINGER_SECONDS, SUBSCRIBER_BUFFER, WatchHub

DEFAULT_APPEND_LIMIT = 20 * 1024 * 1024


@dataclass(frozen=True)
class ServerSettings:
    append_limit: int = DEFAULT_APPEND_LIMIT
    # Bytes one APPEND command (all its MULTIAPPEND messages) may stage in memory.
    append_total_limit: int = 32 * 1024 * 1024
    # Development only: LOGIN/AUTHENTICATE without TLS.
    allow_plaintext_login: bool = False
    tls_available: bool = True
    max_bad_commands: int = 10
    connections_per_user: int = 50
    max_connections: int = 5000  # per process; more get BYE at once
    # Connections not yet logged in, per source address (postscreen/anvil style): one
    # address cannot fill the server with idle sockets and lock everyone else out.
    max_prelogin_per_address: int = 20
    # How long one more connection from that address waits for a slot before BYE.
    prelogin_patience: float = 10.0
    # RFC 3501 5.4: at least 30 minutes once authenticated; much less before. Before
    # login it is an absolute deadline from the connection's start: reads do not extend it.
    preauth_timeout: float = 60.0
    tls_handshake_timeout: float = 15.0
    autologout: float = 30 * 60.0
    idle_timeout: float = 30 * 60.0
    idle_keepalive: float = 120.0
    login_delay_base: float = 0.5
    login_delay_cap: float = 8.0
    envelope_cache_bytes: int = DEFAULT_MAX_BYTES  # ENVELOPEs kept across sessions (see envelope_cache)
    sort_cache_bytes: int = sort_key_cache.DEFAULT_MAX_BYTES  # SORT/THREAD keys kept across sessions
    # How long a mailbox's change feed and its cached ENVELOPEs and SORT keys outlive the
    # last session that had it selected (clients reselect all the time).
    mailbox_linger: float = LINGER_SECONDS
    # Change events queued per session for its selected mailbox; one that falls further
    # behind resynchronises from the store (imapd.watch_hub). And per NOTIFY session.
    watch_buffer: int = SUBSCRIBER_BUFFER
    notify_buffer: int = NOTIFY_BUFFER


class Wire(Protocol):
    """The session's view of its connection (implemented by the server)."""

    @property
    def peer(self) -> str: ...

    @property
    def tls_active(self) -> bool: ...

    async def send(self, data: bytes) -> None: ...

    async def send_parts(self, parts: list[bytes | memoryview]) -> None:
        """Send `parts` in order, as one stream of bytes (the list is consumed)."""
        ...

    def send_now(self, parts: Sequence[bytes | memoryview]) -> int:
        """Bytes of `parts` (in order) written at once without waiting (0 when that cannot
        be done now); the caller sends the rest with `send_parts`."""
        ...

    def request_close(self) -> None:
        """End the connection from a background task (IDLE timeout, BYE)."""
        ...


@dataclass
class ServerContext:
    store: StoreClient
    hub: WatchHub
    settings: ServerSettings
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    cap: ConnectionCap = field(default_factory=lambda: ConnectionCap(50))
    # Set once the store says this writer is fenced: every connection gets BYE.
    fenced: trio.Event = field(default_factory=trio.Event)
    envelopes: EnvelopeCache = field(default_factory=EnvelopeCache)
    sort_keys: SortKeyCache = field(default_factory=SortKeyCache)
    memory: IdleRelease = field(default_factory=IdleRelease)

    def __post_init__(self) -> None:
        self.throttle = LoginThrottle(self.settings.login_delay_base, self.settings.login_delay_cap)
        self.cap = ConnectionCap(self.settings.connections_per_user)
        self.envelopes = EnvelopeCache(max_bytes=self.settings.envelope_cache_bytes)
        self.sort_keys = SortKeyCache(max_bytes=self.settings.sort_cache_bytes)
        self.hub.released.append(self.forget_mailbox)

    def forget_mailbox(self, mailbox: tuple[str, int]) -> None:
        """No session of this process has had `mailbox` selected for the linger time:
        its cached values go (issue 17: an idle process returns to its idle size), the
        store client's included."""
        let_go = self.store.forget_mailbox(mailbox[1])
        if self.envelopes.drop_mailbox(mailbox) + self.sort_keys.drop_mailbox(mailbox) or let_go:
            self.memory.note()
