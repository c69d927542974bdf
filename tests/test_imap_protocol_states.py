"""Connection state machine and the per-state command table."""

from __future__ import annotations

import typing

import pytest

from imapd.protocol import commands as c
from imapd.protocol import states as s
from imapd.protocol.errors import UsageError

S = s.ConnectionState
T = s.Transition


def test_login_select_close_logout_walk() -> None:
    state = S.NOT_AUTHENTICATED
    state = s.next_state(state, T.AUTHENTICATED)
    assert state is S.AUTHENTICATED
    state = s.next_state(state, T.SELECTED)
    assert state is S.SELECTED
    assert s.next_state(state, T.SELECTED) is S.SELECTED
    assert s.next_state(state, T.SELECT_FAILED) is S.AUTHENTICATED
    state = s.next_state(state, T.CLOSED)
    assert state is S.AUTHENTICATED
    assert s.next_state(state, T.LOGGED_OUT) is S.LOGOUT


@pytest.mark.parametrize(
    ("state", "transition"),
    [
        (S.NOT_AUTHENTICATED, T.SELECTED),
        (S.NOT_AUTHENTICATED, T.CLOSED),
        (S.AUTHENTICATED, T.AUTHENTICATED),
        (S.AUTHENTICATED, T.CLOSED),
        (S.LOGOUT, T.AUTHENTICATED),
        (S.LOGOUT, T.LOGGED_OUT),
    ],
)
def test_impossible_transitions(state: s.ConnectionState, transition: s.Transition) -> None:
    with pytest.raises(UsageError):
        s.next_state(state, transition)


def test_every_command_class_has_a_row() -> None:
    assert set(s.VALID_IN) == set(typing.get_args(c.Command))
    assert all(S.LOGOUT not in states for states in s.VALID_IN.values())


def test_table_answers_rfc_3501_placement() -> None:
    assert s.is_valid(c.Login("a", "b"), S.NOT_AUTHENTICATED)
    assert not s.is_valid(c.Login("a", "b"), S.AUTHENTICATED)
    assert s.is_valid(c.Capability(), S.SELECTED)
    assert not s.is_valid(c.Select("INBOX"), S.NOT_AUTHENTICATED)
    assert s.is_valid(c.Select("INBOX"), S.SELECTED)
    assert not s.is_valid(c.Expunge(), S.AUTHENTICATED)
    assert s.is_valid(c.Idle(), S.AUTHENTICATED)
    assert not s.is_valid(c.StartTls(), S.AUTHENTICATED)
    assert S.NOT_AUTHENTICATED not in s.APPEND_VALID_IN
