"""The front ends the agent starts once the store serves: lmtpd and imapd,
bound to the floating IP, with the writer epoch of this activation. imapd
uses cluster.yaml's tls files, or the demo pair under runtime_dir/tls.

imapd runs beside the store as in standalone mode (`--store-data`): reads from
the store's LMDB environment in the shared storage, writes over the store's
local write socket there (issue 13). Both run as the same service user, so the
environment (0700 directory, 0600 files, lock.mdb included: an LMDB reader
writes its slot in the reader table) and the socket (0600, SO_PEERCRED: the
store's own uid or root) admit imapd without any group or wider mode. The
store still checks the writer epoch in every write transaction; imapd stops
before the store and the storage go (haagent/supervisor.py), so it never reads
storage the node no longer holds (AGENT.md, "Front ends beside the store")."""

from __future__ import annotations

from haagent.demo_tls import demo_tls_dir, ensure_tls_files
from haagent.supervisor import FrontEnd, FrontEndContext, FrontEndFactory
from nodeconf import service_user, services
from nodeconf.config import ClusterConfig
from nodeconf.services import IMAPD_METRICS_OFFSET, LMTPD_METRICS_OFFSET, ImapCaches


def lmtpd(ctx: FrontEndContext) -> FrontEnd | None:
    listen = f"{ctx.cluster.floating_ip.address.ip}:{ctx.cluster.ports.lmtp}"
    spec = services.lmtpd_service(
        ctx.store,
        ctx.epoch,
        listen,
        max_message_size=ctx.cluster.store.max_message_size,
        hostname=ctx.cluster.name,
        metrics_listen=f"{ctx.node.address.ip}:{ctx.cluster.ports.metrics + LMTPD_METRICS_OFFSET}",
        store_data=ctx.store_data,  # appends over the store's local write socket
    )
    return FrontEnd(spec, ctx.cluster.ports.lmtp, b"220 ")


def imapd(ctx: FrontEndContext) -> FrontEnd | None:
    cluster = ctx.cluster
    fip = cluster.floating_ip.address.ip
    cert, key, _made = ensure_tls_files(cluster)
    user = service_user.resolve(cluster.service_user)
    if user is not None and key.parent == demo_tls_dir(cluster):
        user.let_read(key.parent, cert, key)  # the demo pair; an operator's files are theirs to set up
    spec = services.imapd_service(
        ctx.store,
        ctx.epoch,
        listen=f"{fip}:{cluster.ports.imap}",
        tls_listen=f"{fip}:{cluster.ports.imaps}",
        cert=cert,
        key=key,
        allow_plaintext_login=cluster.imap.allow_plaintext_login,
        append_limit=cluster.store.max_message_size,
        store_data=ctx.store_data,  # reads from the store's LMDB, writes over its local socket
        metrics_listen=f"{ctx.node.address.ip}:{cluster.ports.metrics + IMAPD_METRICS_OFFSET}",
        caches=ImapCaches(cluster.imap.envelope_cache, cluster.imap.sort_cache, cluster.imap.mailbox_linger_seconds),
    )
    return FrontEnd(spec, cluster.ports.imap, b"* OK")


# What the agent hands to its Supervisor, in start order.
FRONT_ENDS: tuple[FrontEndFactory, ...] = (lmtpd, imapd)


def service_probe(cluster: ClusterConfig) -> tuple[int, bytes]:
    """(port, greeting prefix) that proves the service is up on the floating IP:
    the IMAP greeting (imapd is among FRONT_ENDS)."""
    return cluster.ports.imap, b"* OK"
