"""The readers' web app through Flask's test client: sign-up, confirm, unsubscribe, preferences."""

from __future__ import annotations

import email
import email.policy
import hashlib
import html
import re
from datetime import timedelta

import pytest
from itsdangerous import Signer

from digest.addresses import shown
from digest.clock import to_db, utcnow
from digest.config import with_overrides
from digest.delivery.ledger import audience_variants
from digest.delivery.transports.outbox import OutboxTransport
from digest.models import Subscriber
from digest.readers.privacy import forget
from digest.readers.signup import (
    ALREADY_SUBSCRIBED_SENT,
    CONFIRMATION_SENT,
    NOT_SENT,
    QUEUED,
    RATE_LIMITED,
    expire_pending,
    process_signups,
    sign_up,
)
from digest.readers.subscribers import add_subscriber, find_subscriber, unsubscribe
from digest.readers.subscriptions import mark_address, set_subscription, subscriptions_of
from digest.run import run_due
from digest.store import open_db
from digest.tokens import CONFIRM_SALT, SALT, TokenSigner
from digest.urls import ReaderLinks
from digest.web import create_app

from helpers import add_stories, make_config, story

GMAIL_ONE_CLICK = {
    "data": "List-Unsubscribe=One-Click",
    "content_type": "application/x-www-form-urlencoded",
}


@pytest.fixture
def client(config):
    # No cookie jar: one-click POSTs from mail providers carry none.
    return create_app(config).test_client(use_cookies=False)


@pytest.fixture
def ana(db):
    return add_subscriber(db, "ana@example.com", "Ana")


def reader_path(config, reader: Subscriber, newsletter: str = "daily") -> str:
    return f"/u/{ReaderLinks(config, newsletter).reader_token(reader.id, reader.link_nonce)}"


def submit(client, **form):
    """POST the sign-up form as a browser does; the queued request is handled once the
    response is closed, as a real server closes it after sending."""
    return client.post("/subscribe", data=form, buffered=True)


def status(db, email_address: str, newsletter: str = "daily") -> str | None:
    subscriber = find_subscriber(db, email_address)
    return subscriptions_of(db, subscriber.id).get(newsletter) if subscriber else None


def audit_count(db) -> int:
    return db.execute("SELECT COUNT(*) FROM audit").fetchone()[0]


def confirmation_mail(config, address: str) -> email.message.EmailMessage | None:
    path = config.outbox_dir / "confirmations" / f"{address}.eml"
    if not path.exists():
        return None
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def confirm_path(message) -> str:
    text = message.get_body(("plain",)).get_content()
    return re.search(r"https://news\.test(/confirm/\S+)", text).group(1)


def page_text(response) -> str:
    """What a reader reads: the body's text without tags, styles or extra spaces."""
    body = response.get_data(as_text=True).split("<body>", 1)[-1]
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


# Sign-up and confirmation


def test_the_sign_up_form_is_a_labelled_plain_html_form(client):
    response = client.get("/subscribe")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<html lang="en">' in html and "<script" not in html
    assert '<label for="email">' in html and 'id="email"' in html
    assert "Subscribe to Test Daily" in html
    assert client.get("/").get_data(as_text=True) == html


def test_sign_up_makes_a_pending_reader_and_emails_a_confirmation_link(client, db, config):
    response = submit(client, email="new@example.com")
    assert response.status_code == 200
    assert "Check your inbox" in page_text(response)
    assert find_subscriber(db, "new@example.com").status == "pending"
    assert status(db, "new@example.com") == "pending"
    message = confirmation_mail(config, "new@example.com")
    assert message["Subject"] == "Confirm your subscription to Test Daily"
    assert message["List-Id"] == '"Test Daily" <daily.news.test>'
    assert confirm_path(message) in message.get_body(("html",)).get_content()


def test_the_typed_name_is_never_in_the_confirmation_email(client, db, config):
    submit(client, email="new@example.com", name="Win a prize at evil.example")
    message = confirmation_mail(config, "new@example.com")
    raw = (config.outbox_dir / "confirmations" / "new@example.com.eml").read_text()
    assert "evil" not in raw
    assert message["To"] == "new@example.com"
    assert "Hello," in message.get_body(("plain",)).get_content()
    # Kept for when the owner confirms: the name greets them in the newsletter.
    assert find_subscriber(db, "new@example.com").name == "Win a prize at evil.example"


def test_opening_a_confirmation_link_shows_a_button_and_changes_nothing(client, db, config):
    submit(client, email="new@example.com")
    path = confirm_path(confirmation_mail(config, "new@example.com"))
    before = audit_count(db)
    for response in (client.get(path), client.head(path), client.get(path)):
        assert response.status_code == 200
    assert status(db, "new@example.com") == "pending"
    assert audit_count(db) == before
    html = client.get(path).get_data(as_text=True)
    assert f'<form method="post" action="{path}">' in html
    assert "Confirm my subscription" in html


def test_a_pending_reader_is_not_mailed_until_they_press_confirm(client, db, config):
    add_stories(db, story(1))
    submit(client, email="new@example.com")
    assert audience_variants(db, "daily") == []
    response = client.post(confirm_path(confirmation_mail(config, "new@example.com")))
    assert response.status_code == 200
    assert "You are subscribed" in page_text(response)
    assert find_subscriber(db, "new@example.com").status == "active"
    assert audience_variants(db, "daily") == [("", 1)]
    assert db.execute("SELECT source FROM audit ORDER BY id DESC").fetchone()[0] == "link"


def test_confirming_twice_says_so_and_changes_nothing(client, db, config):
    submit(client, email="new@example.com")
    path = confirm_path(confirmation_mail(config, "new@example.com"))
    client.post(path)
    before = audit_count(db)
    assert "already subscribed" in page_text(client.post(path))
    assert "already subscribed" in page_text(client.get(path))
    assert audit_count(db) == before


def test_a_resubmitted_form_makes_a_new_link_and_the_old_one_stays_dead(client, db, config):
    submit(client, email="new@example.com")
    old = confirm_path(confirmation_mail(config, "new@example.com"))
    later = utcnow() + timedelta(minutes=11)
    sign_up(db, config, "new@example.com", now=later)
    process_signups(db, config, OutboxTransport(config), now=later)
    new = confirm_path(confirmation_mail(config, "new@example.com"))
    assert new != old
    for response in (client.get(old), client.post(old)):
        assert response.status_code == 400
        assert "replaced by a newer one" in page_text(response)
    assert status(db, "new@example.com") == "pending"
    assert client.post(new).status_code == 200
    assert status(db, "new@example.com") == "active"
    assert client.post(old).status_code == 400


def test_a_confirmation_link_expires_after_seven_days(client, db, config):
    week_ago = utcnow() - timedelta(days=7, minutes=1)
    sign_up(db, config, "new@example.com", now=week_ago)
    process_signups(db, config, OutboxTransport(config), now=week_ago)
    path = confirm_path(confirmation_mail(config, "new@example.com"))
    response = client.post(path)
    assert response.status_code == 400
    assert "expired" in page_text(response)
    assert status(db, "new@example.com") == "pending"


def test_pending_sign_ups_not_confirmed_within_seven_days_are_dropped(db, config, ana):
    week_ago = utcnow() - timedelta(days=7, minutes=1)
    set_subscription(db, ana.id, "weekly", "pending", "form")
    db.execute("UPDATE subscriptions SET confirmation_sent_at = ?", [to_db(week_ago)])
    sign_up(db, config, "old@example.com", now=week_ago)
    process_signups(db, config, OutboxTransport(config), now=week_ago)
    dropped = find_subscriber(db, "old@example.com")
    assert expire_pending(db, utcnow()) == 2
    assert find_subscriber(db, "old@example.com") is None
    assert db.execute("SELECT COUNT(*) FROM audit WHERE subscriber_id = ?", [dropped.id]).fetchone()
    assert not db.execute(
        "SELECT 1 FROM subscriptions WHERE subscriber_id = ?", [dropped.id]
    ).fetchone()
    assert subscriptions_of(db, ana.id) == {"daily": "active"}
    assert find_subscriber(db, "ana@example.com").status == "active"


def test_an_unsubscribe_token_confirms_no_one(client, db, config):
    submit(client, email="new@example.com")
    pending = find_subscriber(db, "new@example.com")
    response = client.post(f"/confirm/{reader_path(config, pending)[3:]}")
    assert response.status_code == 400
    assert status(db, "new@example.com") == "pending"


def test_a_confirmation_link_for_a_subscription_left_since_is_refused(client, db, config):
    submit(client, email="new@example.com")
    path = confirm_path(confirmation_mail(config, "new@example.com"))
    unsubscribe(db, "new@example.com")
    response = client.post(path)
    assert response.status_code == 400
    assert status(db, "new@example.com") == "unsubscribed"


def handle(db, config, email_address: str, now=None, **fields) -> list[str]:
    """Sign up through the form's library call, then handle the queue as the app does."""
    sign_up(db, config, email_address, now=now, **fields)
    return process_signups(db, config, OutboxTransport(config), now=now)


def test_a_repeat_sign_up_of_a_pending_address_resends_only_after_ten_minutes(db, config):
    assert handle(db, config, "new@example.com") == [CONFIRMATION_SENT]
    path = config.outbox_dir / "confirmations" / "new@example.com.eml"
    path.unlink()
    assert handle(db, config, "new@example.com") == [RATE_LIMITED]
    assert not path.exists()
    assert handle(db, config, "new@example.com", now=utcnow() + timedelta(minutes=11)) == [
        CONFIRMATION_SENT
    ]
    assert path.exists()


def test_a_confirmation_the_transport_could_not_send_may_be_asked_for_again(db, config, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    sign_up(db, config, "new@example.com")
    broken = OutboxTransport(with_overrides(config, outbox_dir=blocked))
    [outcome] = process_signups(db, config, broken)
    assert outcome.startswith(NOT_SENT) and "Cannot write to the outbox" in outcome
    assert handle(db, config, "new@example.com") == [CONFIRMATION_SENT]


def test_the_resend_limit_is_kept_in_the_database_across_app_restarts(config, db):
    submit(create_app(config).test_client(), email="new@example.com")
    (config.outbox_dir / "confirmations" / "new@example.com.eml").unlink()
    submit(create_app(config).test_client(), email="new@example.com")
    assert confirmation_mail(config, "new@example.com") is None


def test_a_repeat_sign_up_of_an_active_reader_changes_nothing_and_tells_them(db, config, ana):
    before = audit_count(db)
    assert handle(db, config, "ana@example.com", name="Someone Else") == [ALREADY_SUBSCRIBED_SENT]
    message = confirmation_mail(config, "ana@example.com")
    assert message["Subject"] == "You are already subscribed to Test Daily"
    assert "/confirm/" not in message.get_body(("plain",)).get_content()
    assert find_subscriber(db, "ana@example.com").name == "Ana"
    assert audit_count(db) == before


def test_sign_up_of_an_unsubscribed_reader_starts_a_new_opt_in(client, db, config, ana):
    unsubscribe(db, "ana@example.com")
    submit(client, email="ana@example.com")
    assert status(db, "ana@example.com") == "pending"
    assert audience_variants(db, "daily") == []
    client.post(confirm_path(confirmation_mail(config, "ana@example.com")))
    assert status(db, "ana@example.com") == "active"


def reader_states(db) -> tuple[str, ...]:
    add_subscriber(db, "active@example.com")
    add_subscriber(db, "pending@example.com", status="pending")
    bounced = add_subscriber(db, "bounced@example.com")
    mark_address(db, bounced.id, "bounced", "webhook")
    add_subscriber(db, "gone@example.com")
    unsubscribe(db, "gone@example.com")
    forget(db, "forgotten@example.com")
    return ("nobody", "active", "pending", "bounced", "gone", "forgotten")


def test_the_sign_up_answer_is_the_same_whether_or_not_the_address_is_known(client, db):
    answers = set()
    for local in reader_states(db):
        response = submit(client, email=f"{local}@example.com")
        assert response.status_code == 200
        answers.add(response.get_data(as_text=True).replace(local, "ADDRESS"))
    assert len(answers) == 1


def test_the_form_does_the_same_work_whatever_the_addresss_state(db, config):
    # The answer's timing cannot tell states apart: every state takes the same path (one
    # queued request, the same row) and the emails go after the answer.
    queued = set()
    for local in reader_states(db):
        before = db.execute("SELECT COUNT(*) FROM subscribers").fetchone()[0]
        assert sign_up(db, config, f"{local}@example.com", client="192.0.2.1") == QUEUED
        row = db.execute(
            "SELECT email, name, topics, timezone, newsletter, claimed_at FROM signup_requests"
        ).fetchall()
        assert len(row) == 1 and row[0][0] == f"{local}@example.com"
        queued.add(row[0][1:])
        assert db.execute("SELECT COUNT(*) FROM subscribers").fetchone()[0] == before
        assert not (config.outbox_dir / "confirmations").exists()
        db.execute("DELETE FROM signup_requests")
    assert queued == {("", "", "UTC", "daily", None)}


def test_digest_run_handles_sign_ups_the_web_app_left_in_the_queue(db, config):
    sign_up(db, config, "new@example.com")
    report = run_due(db, config, utcnow(), transport=OutboxTransport(config))
    assert "sign-ups: 1 queued request(s) handled" in report.lines
    assert confirmation_mail(config, "new@example.com") is not None


def test_sign_up_sends_nothing_to_a_bounced_or_complained_address(client, db, config, ana):
    mark_address(db, ana.id, "complained", "webhook")
    submit(client, email="ana@example.com")
    assert confirmation_mail(config, "ana@example.com") is None
    assert find_subscriber(db, "ana@example.com").status == "complained"


@pytest.mark.parametrize(
    "form, message",
    [
        ({"email": "not-an-address"}, "invalid address"),
        ({"email": "josé@example.com"}, "non-ASCII characters before the @"),
        ({"email": "new@example.com", "name": "Ana\r\nBcc: x@example.com"}, "line break"),
        ({"email": "new@example.com", "name": "A" * 101}, "longer than 100"),
        ({"email": "new@example.com", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"email": "new@example.com", "timezone": "Europe/" + "x" * 300}, "unknown time zone"),
        ({"email": "new@example.com", "topics": "astrology"}, "unknown topic"),
        ({"email": "new@example.com", "newsletter": "hourly"}, "unknown newsletter 'hourly'"),
    ],
    ids=["malformed", "non-ascii", "crlf-name", "long-name", "zone", "long-zone", "topic", "nl"],
)
def test_a_bad_sign_up_field_is_a_400_with_the_reason_and_writes_nothing(
    client, db, config, form, message
):
    response = submit(client, **form)
    assert response.status_code == 400
    assert 'role="alert"' in response.get_data(as_text=True)
    assert message in page_text(response)
    assert "digest.toml" not in page_text(response) and "[newsletters" not in page_text(response)
    for table in ("subscribers", "subscriptions", "audit", "signup_requests", "signup_attempts"):
        assert db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0, table
    assert not config.outbox_dir.exists()


def test_sign_up_keeps_the_chosen_topics_and_time_zone(client, db):
    add_stories(db, story(1, category="science"), story(2, category="world"))
    submit(client, email="new@example.com", topics=["science"], timezone="Asia/Tokyo")
    reader = find_subscriber(db, "new@example.com")
    assert (reader.topics, reader.timezone) == (("science",), "Asia/Tokyo")


# Flood limits


def limited_app(tmp_path, **limits):
    config = make_config(tmp_path, signup=limits)
    return config, create_app(config).test_client(use_cookies=False)


def test_one_client_gets_only_its_hourly_share_of_sign_ups(tmp_path):
    config, client = limited_app(tmp_path, per_client_per_hour=2)
    assert submit(client, email="a@example.com").status_code == 200
    assert submit(client, email="b@example.com").status_code == 200
    response = submit(client, email="c@example.com")
    assert response.status_code == 429
    assert "too many sign-ups from your network" in page_text(response)
    other = client.post(
        "/subscribe",
        data={"email": "c@example.com"},
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
        buffered=True,
    )
    assert other.status_code == 200
    assert confirmation_mail(config, "c@example.com") is not None


def test_behind_a_proxy_the_client_is_the_address_the_proxy_saw(tmp_path):
    _config, client = limited_app(tmp_path, per_client_per_hour=1, proxies=1)

    def from_client(address: str, forged: str = ""):
        chain = f"{forged}, {address}" if forged else address
        headers = {"X-Forwarded-For": chain}
        return client.post("/subscribe", data={"email": "a@example.com"}, headers=headers)

    assert from_client("198.51.100.1").status_code == 200
    assert from_client("198.51.100.2").status_code == 200
    # What the client wrote in the header itself does not make it someone else.
    assert from_client("198.51.100.1", forged="203.0.113.5").status_code == 429


def test_the_overall_hourly_limit_counts_every_client_and_every_worker(tmp_path):
    config, client = limited_app(tmp_path, per_hour=2)
    other_worker = create_app(config).test_client(use_cookies=False)
    for n, app in enumerate((client, other_worker)):
        environ = {"REMOTE_ADDR": f"198.51.100.{n}"}
        app.post("/subscribe", data={"email": f"r{n}@example.com"}, environ_base=environ)
    response = other_worker.post(
        "/subscribe", data={"email": "late@example.com"}, environ_base={"REMOTE_ADDR": "192.0.2.9"}
    )
    assert response.status_code == 429
    assert "too many sign-ups from everyone" in page_text(response)


def test_plus_addressed_variants_share_one_mailboxs_limit_but_stay_separate_readers(tmp_path):
    config, client = limited_app(tmp_path, per_mailbox_per_day=2)
    for address in ("ana+1@example.com", "ANA+2@example.com", "ana@example.com"):
        assert submit(client, email=address).status_code == 200
    db = open_db(config.db_path)
    assert [r[0] for r in db.execute("SELECT email FROM subscribers ORDER BY id")] == [
        "ana+1@example.com",
        "ANA+2@example.com",
    ]
    assert confirmation_mail(config, "ana@example.com") is None
    db.close()


# Public error pages


def test_a_server_error_page_gives_no_operator_advice(client, db):
    db.execute("DROP TABLE signup_attempts")
    response = submit(client, email="new@example.com")
    assert response.status_code == 500
    text = page_text(response)
    assert "Something went wrong on our side" in text
    for advice in ("Traceback", "digest", "DIGEST_", "sqlite", "signup_attempts", "--db"):
        assert advice not in text


# The reader's page and unsubscribing


def test_opening_the_unsubscribe_page_never_unsubscribes(client, db, config, ana):
    before = audit_count(db)
    for _ in range(2):
        assert client.get(reader_path(config, ana)).status_code == 200
        assert client.head(reader_path(config, ana)).status_code == 200
    assert status(db, "ana@example.com") == "active"
    assert audit_count(db) == before


def test_the_unsubscribe_page_has_one_button_and_the_preferences_form(client, config, ana):
    html = client.get(reader_path(config, ana)).get_data(as_text=True)
    assert html.count("<button") == 2  # unsubscribe, save preferences
    assert "Unsubscribe from Test Daily" in html
    assert 'id="preferences"' in html
    assert "ana@example.com" in html and "<script" not in html


def test_one_click_as_gmail_sends_it_unsubscribes_with_200_and_no_redirect(client, db, config, ana):
    response = client.post(reader_path(config, ana), **GMAIL_ONE_CLICK)
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert "Set-Cookie" not in response.headers
    assert status(db, "ana@example.com") == "unsubscribed"
    assert audience_variants(db, "daily") == []
    source = db.execute("SELECT source, newsletter FROM audit ORDER BY id DESC LIMIT 2")
    assert set(source.fetchall()) == {("one-click", "daily"), ("one-click", None)}


def test_one_click_twice_is_harmless(client, db, config, ana):
    client.post(reader_path(config, ana), **GMAIL_ONE_CLICK)
    before = audit_count(db)
    assert client.post(reader_path(config, ana), **GMAIL_ONE_CLICK).status_code == 200
    assert audit_count(db) == before


def test_the_pages_button_unsubscribes_and_shows_a_confirmation(client, db, config, ana):
    response = client.post(reader_path(config, ana))
    assert response.status_code == 200
    assert "You are unsubscribed" in page_text(response)
    assert "ana@example.com will get no more Test Daily" in page_text(response)
    assert db.execute("SELECT source FROM audit ORDER BY id DESC").fetchone()[0] == "form"


def test_one_click_leaves_only_the_newsletter_the_email_came_from(tmp_path):
    config = make_config(
        tmp_path,
        newsletters={"daily": {"title": "Test Daily"}, "weekly": {"title": "Test Weekly"}},
    )
    client = create_app(config).test_client(use_cookies=False)
    db = open_db(config.db_path)
    ana = add_subscriber(db, "ana@example.com", newsletter="daily")
    set_subscription(db, ana.id, "weekly", "active", "cli")
    client.post(reader_path(config, ana, "weekly"), **GMAIL_ONE_CLICK)
    assert subscriptions_of(db, ana.id) == {"daily": "active", "weekly": "unsubscribed"}
    assert find_subscriber(db, "ana@example.com").status == "active"
    db.close()


LEGACY = Signer("test-secret", salt=SALT, digest_method=hashlib.sha256)


@pytest.mark.parametrize(
    "token",
    [
        lambda config, ana: reader_path(config, ana)[3:-3] + "AAA",
        lambda config, ana: TokenSigner("another-key").make(ana.id, ana.link_nonce, "daily"),
        lambda config, ana: f"{ana.id}.{ana.link_nonce}.daily",
        lambda config, ana: TokenSigner(config.secret_key, CONFIRM_SALT).make(
            ana.id, ana.link_nonce, "daily"
        ),
        lambda config, ana: TokenSigner(config.secret_key).make(
            ana.id + 1, ana.link_nonce, "daily"
        ),
        lambda config, ana: TokenSigner(config.secret_key).make(ana.id, "f" * 16, "daily"),
        lambda config, ana: LEGACY.sign(f"{ana.id}.daily").decode(),
    ],
    ids=[
        "forged-signature",
        "other-key",
        "unsigned",
        "confirmation-token",
        "unknown-reader",
        "other-nonce",
        "old-format-for-a-reader-added-since",
    ],
)
def test_a_bad_token_answers_400_with_a_friendly_page_and_changes_nothing(
    client, db, config, ana, token
):
    path = f"/u/{token(config, ana)}"
    before = audit_count(db)
    for response in (
        client.get(path),
        client.post(path, **GMAIL_ONE_CLICK),
        client.post(f"{path}/preferences", data={"timezone": "UTC"}),
    ):
        assert response.status_code == 400
        assert "This link does not work" in page_text(response)
        assert "Nothing has been changed" in page_text(response)
    assert status(db, "ana@example.com") == "active"
    assert audit_count(db) == before


# Preferences


def test_preferences_set_topics_time_zone_and_newsletters(client, db, config, ana):
    add_stories(db, story(1, category="science"), story(2, category="world"))
    response = client.post(
        reader_path(config, ana) + "/preferences",
        data={"topics": ["science", "world"], "timezone": "Asia/Kolkata", "newsletters": "daily"},
    )
    assert response.status_code == 200
    assert "Your preferences are saved." in page_text(response)
    reader = find_subscriber(db, "ana@example.com")
    assert (reader.topics, reader.timezone) == (("science", "world"), "Asia/Kolkata")
    assert db.execute("SELECT action, source, detail FROM audit ORDER BY id DESC").fetchone() == (
        "profile",
        "form",
        "topics, timezone",
    )


def test_unticking_every_newsletter_in_preferences_unsubscribes(client, db, config, ana):
    client.post(reader_path(config, ana) + "/preferences", data={"timezone": "UTC"})
    assert status(db, "ana@example.com") == "unsubscribed"
    assert find_subscriber(db, "ana@example.com").status == "unsubscribed"


def test_ticking_the_newsletter_again_resubscribes(client, db, config, ana):
    unsubscribe(db, "ana@example.com")
    client.post(
        reader_path(config, ana) + "/preferences",
        data={"timezone": "UTC", "newsletters": "daily"},
    )
    assert status(db, "ana@example.com") == "active"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Europe/" + "x" * 300])
def test_a_bad_preference_is_refused_with_the_reason_and_nothing_changes(
    client, db, config, ana, zone
):
    before = audit_count(db)
    response = client.post(
        reader_path(config, ana) + "/preferences",
        data={"timezone": zone},
    )
    assert response.status_code == 400
    assert f"unknown time zone {shown(zone)}" in page_text(response)
    assert find_subscriber(db, "ana@example.com").timezone == "UTC"
    assert status(db, "ana@example.com") == "active"
    assert audit_count(db) == before


# The app around the routes


def test_pages_keep_their_token_out_of_referrers_and_caches(client, config, ana):
    headers = client.get(reader_path(config, ana)).headers
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def test_a_confirmation_that_could_not_be_sent_is_kept_shown_and_sent_later(db, config, tmp_path):
    from digest.status import digest_status

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    sign_up(db, config, "new@example.com")
    broken = OutboxTransport(with_overrides(config, outbox_dir=blocked))
    process_signups(db, config, broken)
    status = "\n".join(digest_status(db, config, utcnow()).lines())
    assert "sign-ups: 1 confirmation email(s) not sent yet (nothing sent:" in status
    # Tried again once its claim is stale (a later `digest run`), through a working transport.
    later = utcnow() + timedelta(minutes=11)
    db.execute("UPDATE signup_requests SET claimed_at = '2000-01-01T00:00:00Z'")
    assert process_signups(db, config, OutboxTransport(config), later) == [CONFIRMATION_SENT]
    assert confirmation_mail(config, "new@example.com") is not None
    assert "sign-ups:" not in "\n".join(digest_status(db, config, utcnow()).lines())
