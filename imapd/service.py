"""`mailha imapd serve`: one imapd process on a running store."""

from __future__ import annotations

import logging
import pathlib
import sys
from dataclasses import dataclass
from functools import partial

import trio

from imapd.errors import TlsSetupError
from imapd.server import Endpoint, parse_endpoint, serve
from imapd.session.context import DEFAULT_APPEND_LIMIT, ServerSettings
from imapd.store_grpc import GrpcStore
from imapd.tls import server_context

log = logging.getLogger("imapd")


@dataclass(frozen=True)
class ImapdOptions:
    store: str
    epoch: int
    listen: tuple[str, ...] = ("127.0.0.1:1143",)
    tls_listen: tuple[str, ...] = ("127.0.0.1:1993",)
    cert: pathlib.Path | None = None
    key: pathlib.Path | None = None
    allow_plaintext_login: bool = False
    append_limit: int = DEFAULT_APPEND_LIMIT
    connections_per_user: int = 50


def run_imapd(options: ImapdOptions) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ssl_context = None
    if options.cert is not None and options.key is not None:
        try:
            ssl_context = server_context(options.cert, options.key)
        except TlsSetupError as exc:
            print(f"mailha imapd serve: {exc}", file=sys.stderr)
            return 2
    elif options.tls_listen:
        print("mailha imapd serve: --tls-listen needs --cert and --key", file=sys.stderr)
        return 2
    endpoints: list[Endpoint] = [parse_endpoint(a, False) for a in options.listen]
    endpoints += [parse_endpoint(a, True) for a in options.tls_listen]
    settings = ServerSettings(
        append_limit=options.append_limit,
        allow_plaintext_login=options.allow_plaintext_login,
        tls_available=ssl_context is not None,
        connections_per_user=options.connections_per_user,
    )

    async def main() -> None:
        store = GrpcStore(options.store, options.epoch)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(partial(serve, store, settings, ssl_context, endpoints))
                names = ", ".join(f"{e.host}:{e.port}{' (TLS)' if e.implicit_tls else ''}" for e in endpoints)
                log.info("imapd listening on %s, store %s, writer epoch %d", names, options.store, options.epoch)
        finally:
            await store.aclose()

    trio.run(main)
    log.info("imapd stopped")
    return 0
