"""Command class -> handler: the one dispatch table (no getattr by name)."""

from __future__ import annotations

from typing import Final

from imapd.protocol import commands as c
from imapd.session import (
    append_flow,
    auth_commands,
    context_commands,
    idle_flow,
    mailbox_commands,
    message_commands,
    metadata_commands,
    notify_commands,
    sort_commands,
)
from imapd.session.session import Handler

# After a command, a session with CONTEXT=SEARCH updates refreshes them (handed to Session).
CONTEXT_REFRESH: Final = context_commands.refresh

HANDLERS: Final[dict[type, Handler]] = {
    c.Capability: auth_commands.capability,
    c.Noop: auth_commands.noop,
    c.Check: auth_commands.noop,
    c.Logout: auth_commands.logout,
    c.Id: auth_commands.id_,
    c.Compress: auth_commands.compress,
    c.StartTls: auth_commands.starttls,
    c.Login: auth_commands.login,
    c.Authenticate: auth_commands.authenticate,
    c.Select: mailbox_commands.select,
    c.Create: mailbox_commands.create,
    c.Delete: mailbox_commands.delete,
    c.Rename: mailbox_commands.rename,
    c.Subscribe: mailbox_commands.subscribe,
    c.Unsubscribe: mailbox_commands.subscribe,
    c.List: mailbox_commands.list_,
    c.Lsub: mailbox_commands.lsub,
    c.Status: mailbox_commands.status,
    c.Namespace: mailbox_commands.namespace,
    c.Enable: mailbox_commands.enable,
    c.Notify: notify_commands.notify,
    c.GetQuota: mailbox_commands.getquota,
    c.GetQuotaRoot: mailbox_commands.getquotaroot,
    c.SetQuota: mailbox_commands.setquota,
    c.GetMetadata: metadata_commands.getmetadata,
    c.SetMetadata: metadata_commands.setmetadata,
    c.Close: mailbox_commands.close,
    c.Unselect: mailbox_commands.close,
    c.Append: append_flow.append_command,
    c.Idle: idle_flow.idle,
    c.Fetch: message_commands.fetch,
    c.Store: message_commands.store,
    c.Copy: message_commands.copy,
    c.Move: message_commands.copy,
    c.Expunge: message_commands.expunge,
    c.Search: message_commands.search,
    c.Sort: sort_commands.sort,
    c.Thread: sort_commands.thread_,
    c.CancelUpdate: context_commands.cancel_update,
}
