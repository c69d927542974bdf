"""The front ends the agent starts once the store serves: lmtpd and imapd,
bound to the floating IP, with the writer epoch of this activation."""

from __future__ import annotations

from haagent.supervisor import FRONT_ENDS, FrontEnd, FrontEndContext
from mailha import services
from mailha.config import ClusterConfig


def lmtpd(ctx: FrontEndContext) -> FrontEnd | None:
    listen = f"{ctx.cluster.floating_ip.address.ip}:{ctx.cluster.ports.lmtp}"
    spec = services.lmtpd_service(
        ctx.store, ctx.epoch, listen, max_message_size=ctx.cluster.store.max_message_size, hostname=ctx.cluster.name
    )
    return FrontEnd(spec, ctx.cluster.ports.lmtp, b"220 ")


def install() -> None:
    """Register the front ends (idempotent)."""
    for factory in (lmtpd,):
        if factory not in FRONT_ENDS:
            FRONT_ENDS.append(factory)


def service_probe(cluster: ClusterConfig) -> tuple[int, bytes]:
    """(port, greeting prefix) that proves the service is up on the floating IP:
    IMAP when imapd is installed, else LMTP."""
    install()
    if any(getattr(f, "__name__", "") == "imapd" for f in FRONT_ENDS):
        return cluster.ports.imap, b"* OK"
    return cluster.ports.lmtp, b"220 "
