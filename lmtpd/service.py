"""`mailha lmtpd serve`: the LMTP server process, wired to the store over gRPC (and its
local write socket when it runs beside it: `store_data`)."""

from __future__ import annotations

import logging
import pathlib
import signal

import trio

from lmtpd.delivery import MailDrop
from lmtpd.server import LmtpdOptions, serve
from lmtpd.settings_drop import PersonalOptions, SettingsMailDrop
from lmtpd.store_gateway import GrpcMailDrop

log = logging.getLogger("mailha.lmtpd")


def parse_listen(listen: str) -> tuple[str, int]:
    """'127.0.0.1:2424' -> ('127.0.0.1', 2424)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"--listen: expected HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


def run_lmtpd(
    store: str,
    epoch: int,
    listen: str,
    options: LmtpdOptions,
    *,
    resolve_ttl: float = 0.0,
    personal: PersonalOptions | None = None,
    store_data: pathlib.Path | None = None,
) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # A line per delivery, in the one connection's sequential path: the record fields that format
    # does not show are not gathered (the logging module's documented switches: no caller's frame,
    # thread, process id or process name per record).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    host, port = parse_listen(listen)
    grpc_drop = GrpcMailDrop(store, epoch, resolve_ttl=resolve_ttl, store_data=store_data)
    # Each recipient's own settings (forwarding, blocked domains, spam action) and the delivery log.
    settings_drop = SettingsMailDrop(grpc_drop, store, epoch, personal or PersonalOptions())
    drop: MailDrop = settings_drop

    async def main() -> None:
        try:
            async with trio.open_nursery() as nursery:
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    await nursery.start(serve, options, drop, host, port)
                    beside = f", its local write socket in {store_data}" if store_data is not None else ""
                    log.info("LMTP on %s:%d, store %s%s, writer epoch %d", host, port, store, beside, epoch)
                    async for signum in signals:
                        log.info("signal %d: stopping", signum)
                        nursery.cancel_scope.cancel()
                        break
        finally:
            grpc_drop.close_local_writes()

    try:
        trio.run(main)
    finally:
        settings_drop.close()
        grpc_drop.close()
    return 0
