"""IMAP connection states (RFC 3501 section 3) as an explicit state machine.

`TRANSITIONS` is the whole diagram: (state, what happened) -> next state.
`VALID_IN` says in which states each command may be issued, so the session
answers "BAD command not valid in this state" from one table.
"""

from __future__ import annotations

import enum
from typing import Final

from imapd.protocol import commands as c
from imapd.protocol.errors import UsageError


class ConnectionState(enum.Enum):
    NOT_AUTHENTICATED = "not-authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"

    # Members are singletons compared by identity: hash them by identity too, in C. Enum's
    # own __hash__ (of the name) is a Python call in every command's `is_valid` (issue 13).
    __hash__ = object.__hash__


class Transition(enum.Enum):
    """What makes the state change."""

    AUTHENTICATED = "login-or-authenticate-ok"  # LOGIN / AUTHENTICATE succeeded
    SELECTED = "select-ok"  # SELECT / EXAMINE succeeded
    SELECT_FAILED = "select-failed"  # SELECT / EXAMINE failed: any selected mailbox is closed
    CLOSED = "closed"  # CLOSE / UNSELECT, or the selected mailbox vanished
    LOGGED_OUT = "logged-out"  # LOGOUT, BYE, autologout, connection lost


S = ConnectionState
T = Transition

TRANSITIONS: Final[dict[tuple[ConnectionState, Transition], ConnectionState]] = {
    (S.NOT_AUTHENTICATED, T.AUTHENTICATED): S.AUTHENTICATED,
    (S.NOT_AUTHENTICATED, T.LOGGED_OUT): S.LOGOUT,
    (S.AUTHENTICATED, T.SELECTED): S.SELECTED,
    (S.AUTHENTICATED, T.SELECT_FAILED): S.AUTHENTICATED,
    (S.AUTHENTICATED, T.LOGGED_OUT): S.LOGOUT,
    (S.SELECTED, T.SELECTED): S.SELECTED,  # SELECT while selected switches mailbox
    (S.SELECTED, T.SELECT_FAILED): S.AUTHENTICATED,
    (S.SELECTED, T.CLOSED): S.AUTHENTICATED,
    (S.SELECTED, T.LOGGED_OUT): S.LOGOUT,
}


def next_state(state: ConnectionState, transition: Transition) -> ConnectionState:
    """The state after `transition`; UsageError if the diagram has no such edge."""
    try:
        return TRANSITIONS[(state, transition)]
    except KeyError:
        raise UsageError(f"no transition {transition.value} from {state.value}") from None


_ANY: Final = frozenset({S.NOT_AUTHENTICATED, S.AUTHENTICATED, S.SELECTED})
_NOT_AUTH: Final = frozenset({S.NOT_AUTHENTICATED})
_AUTH: Final = frozenset({S.AUTHENTICATED, S.SELECTED})
_SELECTED: Final = frozenset({S.SELECTED})

VALID_IN: Final[dict[type[c.Command], frozenset[ConnectionState]]] = {
    c.Capability: _ANY,
    c.Noop: _ANY,
    c.Logout: _ANY,
    c.Id: _ANY,
    c.Compress: _AUTH,  # RFC 4978: after authentication, to avoid compression attacks on credentials
    c.StartTls: _NOT_AUTH,
    c.Authenticate: _NOT_AUTH,
    c.Login: _NOT_AUTH,
    c.Select: _AUTH,
    c.Create: _AUTH,
    c.Delete: _AUTH,
    c.Rename: _AUTH,
    c.Subscribe: _AUTH,
    c.Unsubscribe: _AUTH,
    c.List: _AUTH,
    c.Lsub: _AUTH,
    c.Status: _AUTH,
    c.Append: _AUTH,
    c.Idle: _AUTH,
    c.Notify: _AUTH,
    c.Namespace: _AUTH,
    c.Enable: _AUTH,
    c.GetQuota: _AUTH,
    c.GetQuotaRoot: _AUTH,
    c.SetQuota: _AUTH,
    c.GetMetadata: _AUTH,
    c.SetMetadata: _AUTH,
    c.Check: _SELECTED,
    c.Close: _SELECTED,
    c.Unselect: _SELECTED,
    c.Expunge: _SELECTED,
    c.Search: _SELECTED,
    c.Sort: _SELECTED,
    c.CancelUpdate: _SELECTED,
    c.Thread: _SELECTED,
    c.Fetch: _SELECTED,
    c.Store: _SELECTED,
    c.Copy: _SELECTED,
    c.Move: _SELECTED,
}

# A streamed APPEND (parser events, no Append object) is checked with this.
APPEND_VALID_IN: Final = VALID_IN[c.Append]


def is_valid(command: c.Command, state: ConnectionState) -> bool:
    return state in VALID_IN[type(command)]
