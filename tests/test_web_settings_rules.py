"""Per-user settings in the store, the delivery log's bound, the rules lmtpd applies,
and the web's login limiter: fast tests, no processes."""

from __future__ import annotations

import pytest

from lmtpd.personal_rules import Action, MessageFacts, SpamHeader, decide, message_facts
from mailha_api import settings_pb2, store_pb2
from store import delivery_log, user_settings
from store.engine import MailStore
from store.errors import InvalidArgument, NotFound, Unauthenticated
from web.login_limiter import WebLoginLimiter
from web.routes_admin import _ms
from web.svg_chart import Mark, line_chart


def _user(store: MailStore, name: str = "ann") -> None:
    store.create_user(store_pb2.CreateUserRequest(epoch=1, name=name, password="pw-" + name))


def _put(store: MailStore, settings: settings_pb2.UserSettings) -> settings_pb2.UserSettings:
    return store.write(1, lambda ctx: user_settings.put(ctx.txn, ctx.dbs, settings))


def test_settings_are_validated_and_kept(mail_store: MailStore) -> None:
    _user(mail_store)
    saved = _put(
        mail_store,
        settings_pb2.UserSettings(
            user="ann", forward_to="Ann@Elsewhere.Test", blocked_domains=["Spam.Example.", "spam.example", "b.test"]
        ),
    )
    assert list(saved.blocked_domains) == ["spam.example", "b.test"]
    read = mail_store.read(lambda txn: user_settings.get(txn, mail_store.dbs, "ann"))
    assert read == saved
    with pytest.raises(InvalidArgument, match="at most 10"):
        _put(mail_store, settings_pb2.UserSettings(user="ann", blocked_domains=[f"d{i}.test" for i in range(11)]))
    with pytest.raises(InvalidArgument, match="not a domain"):
        _put(mail_store, settings_pb2.UserSettings(user="ann", blocked_domains=["no domain"]))
    with pytest.raises(InvalidArgument):
        _put(mail_store, settings_pb2.UserSettings(user="ann", forward_to="not-an-address"))
    with pytest.raises(NotFound):
        _put(mail_store, settings_pb2.UserSettings(user="nobody"))
    # A refused write changed nothing.
    assert mail_store.read(lambda txn: user_settings.get(txn, mail_store.dbs, "ann")) == saved


def test_a_disabled_user_cannot_log_in_and_deleting_the_user_drops_the_settings(mail_store: MailStore) -> None:
    _user(mail_store)
    assert mail_store.authenticate("ann", "pw-ann") == "ann"
    _put(mail_store, settings_pb2.UserSettings(user="ann", disabled=True))
    mail_store.logins.forget_user("ann")
    with pytest.raises(Unauthenticated):
        mail_store.authenticate("ann", "pw-ann")
    mail_store.delete_user(store_pb2.DeleteUserRequest(epoch=1, name="ann"))
    _user(mail_store)
    assert mail_store.authenticate("ann", "pw-ann") == "ann"  # a new user of that name starts clean


def test_the_delivery_log_is_bounded_and_searchable(mail_store: MailStore) -> None:
    def record(i: int) -> settings_pb2.DeliveryRecord:
        return settings_pb2.DeliveryRecord(
            time_ms=1000 + i, sender=f"s{i}@a.test", recipient="r@b.test", user="u" if i % 2 else "v",
            message_id=f"<m{i}@a.test>",
        )  # fmt: skip

    kept = mail_store.write(1, lambda ctx: delivery_log.record(ctx.txn, ctx.dbs, [record(i) for i in range(30)], 25))
    assert kept == 25
    found = mail_store.read(
        lambda txn: delivery_log.search(txn, mail_store.dbs, settings_pb2.SearchDeliveriesRequest(limit=100))
    )
    assert [r.message_id for r in found] == [f"<m{i}@a.test>" for i in range(29, 4, -1)]  # newest first, 5 oldest gone
    query = settings_pb2.SearchDeliveriesRequest(user="u", message_id="M2", since_ms=1021, until_ms=1027)
    found = mail_store.read(lambda txn: delivery_log.search(txn, mail_store.dbs, query))
    assert [r.message_id for r in found] == ["<m27@a.test>", "<m25@a.test>", "<m23@a.test>", "<m21@a.test>"]


def test_a_long_delivery_log_is_trimmed_in_batches_and_never_past_its_limit(mail_store: MailStore) -> None:
    limit = 4 * delivery_log.TRIM_BATCH + 100

    def log(first: int, count: int) -> int:
        records = [
            settings_pb2.DeliveryRecord(time_ms=1000 + i, message_id=f"<m{i}>") for i in range(first, first + count)
        ]
        return mail_store.write(1, lambda ctx: delivery_log.record(ctx.txn, ctx.dbs, records, limit))

    def ids() -> list[str]:
        query = settings_pb2.SearchDeliveriesRequest(limit=limit + 1)
        return [r.message_id for r in mail_store.read(lambda txn: delivery_log.search(txn, mail_store.dbs, query))]

    assert log(0, limit) == limit  # at the limit: nothing goes
    kept = log(limit, 1)  # one past it: the oldest go in one batch
    assert kept == limit - delivery_log.TRIM_BATCH
    assert ids() == [f"<m{i}>" for i in range(limit, limit - kept, -1)]
    sizes = [log(limit + 1 + i, 1) for i in range(delivery_log.TRIM_BATCH + 1)]  # one per delivery again
    assert max(sizes) == limit and sizes[-1] == limit - delivery_log.TRIM_BATCH  # filled up, trimmed once more
    assert ids()[0] == f"<m{limit + delivery_log.TRIM_BATCH + 1}>"


HEAD = b"From: a@b\r\nX-Spam-Flag: yes\r\nMessage-ID: <1@b.test>\r\n\r\nX-Spam-Flag: NO\r\n"


def test_message_facts_read_only_the_header_block() -> None:
    facts = message_facts("Someone@Mail.Spam.Example", HEAD, SpamHeader())
    assert facts == MessageFacts("mail.spam.example", True, "<1@b.test>")
    assert not message_facts("", b"Subject: x\r\n\r\nX-Spam-Flag: YES\r\n", SpamHeader()).spam
    assert message_facts("", b"X-Spam: high\r\n\r\n", SpamHeader.parse("X-Spam: HIGH")).spam
    with pytest.raises(ValueError, match="Name: value"):
        SpamHeader.parse("X-Spam-Flag")


@pytest.mark.parametrize(
    ("settings", "facts", "action", "folder", "forward"),
    [
        (settings_pb2.UserSettings(), MessageFacts("a.test", False, ""), Action.STORE, "INBOX", ""),
        (settings_pb2.UserSettings(), MessageFacts("a.test", True, ""), Action.STORE, "Junk", ""),
        (
            settings_pb2.UserSettings(spam_action=settings_pb2.SPAM_TO_INBOX),
            MessageFacts("a.test", True, ""),
            Action.STORE,
            "INBOX",
            "",
        ),
        (
            settings_pb2.UserSettings(spam_action=settings_pb2.SPAM_DISCARD),
            MessageFacts("a.test", True, ""),
            Action.DISCARD,
            "INBOX",
            "",
        ),
        (
            settings_pb2.UserSettings(blocked_domains=["spam.example"]),
            MessageFacts("mx.spam.example", False, ""),
            Action.STORE,
            "Junk",
            "",
        ),
        (
            settings_pb2.UserSettings(blocked_domains=["spam.example"]),
            MessageFacts("notspam.example", False, ""),
            Action.STORE,
            "INBOX",
            "",
        ),
        (
            settings_pb2.UserSettings(blocked_domains=["spam.example"], block_action=settings_pb2.BLOCK_REFUSE),
            MessageFacts("spam.example", False, ""),
            Action.REFUSE,
            "INBOX",
            "",
        ),
        (
            settings_pb2.UserSettings(forward_to="x@y.test"),
            MessageFacts("a.test", False, ""),
            Action.DISCARD,
            "INBOX",
            "x@y.test",
        ),
        (
            settings_pb2.UserSettings(forward_to="x@y.test", forward_keep_copy=True),
            MessageFacts("a.test", False, ""),
            Action.STORE,
            "INBOX",
            "x@y.test",
        ),
        # Spam is not forwarded: it goes where the spam action says.
        (
            settings_pb2.UserSettings(forward_to="x@y.test"),
            MessageFacts("a.test", True, ""),
            Action.STORE,
            "Junk",
            "",
        ),
    ],
)
def test_decide(
    settings: settings_pb2.UserSettings, facts: MessageFacts, action: Action, folder: str, forward: str
) -> None:
    got = decide(settings, facts)
    assert (got.action, got.folder, got.forward_to) == (action, folder, forward)


def test_a_message_forwarded_from_here_before_is_kept_not_sent_round_again() -> None:
    settings = settings_pb2.UserSettings(forward_to="bob@b.test")
    head = b"Delivered-To: Ann@A.test\r\nMessage-ID: <l@x>\r\n\r\nbody\r\n"
    facts = message_facts("x@c.test", head, SpamHeader())
    assert decide(settings, facts, "ann@a.test") == decide(settings, facts, "ANN@a.test")
    assert decide(settings, facts, "ann@a.test").action is Action.STORE
    assert decide(settings, facts, "ann@a.test").forward_to == ""
    assert decide(settings, facts, "carl@a.test").forward_to == "bob@b.test"


def test_login_limiter_keys_by_address_and_by_user() -> None:
    limiter = WebLoginLimiter(base=0.5, cap=4.0)
    assert [limiter.failed("192.0.2.1", "ann") for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    # Another address guessing the same user is slowed by the user's count.
    assert limiter.failed("192.0.2.2", "Ann") == 4.0
    # The same address guessing another user is slowed by the address's count.
    assert limiter.failed("192.0.2.1", "bob") == 4.0
    limiter.succeeded("192.0.2.3", "carol")
    assert limiter.failed("192.0.2.3", "carol") == 0.5
    assert limiter.failures("192.0.2.1", "nobody") == 6


def test_delivery_log_time_fields_are_utc() -> None:
    assert _ms("1970-01-01T00:00:10") == 10_000
    assert _ms("2026-12-06T03:00") == 1_796_526_000_000
    assert _ms("") == 0


def test_chart_escapes_names_and_marks_events() -> None:
    svg = line_chart("CPU <per> service", {"a&b": [(100.0, 1.0), (160.0, 3.0)]}, [Mark(130.0, "node2 <- node1")])
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "CPU &lt;per&gt; service" in svg and "a&amp;b" in svg and "node2 &lt;- node1" in svg
    assert 'class="mark"' in svg and "<polyline" in svg
