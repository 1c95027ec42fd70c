"""The readers' web app through Flask's test client: sign-up, confirm, unsubscribe, preferences."""

from __future__ import annotations

import email
import email.policy
import html
import re
from datetime import timedelta

import pytest

from digest.clock import utcnow
from digest.config import with_overrides
from digest.readers.privacy import forget
from digest.readers.signup import (
    ALREADY_SUBSCRIBED_SENT,
    CONFIRMATION_SENT,
    NOT_SENT,
    RATE_LIMITED,
    sign_up,
)
from digest.readers.subscribers import add_subscriber, find_subscriber, unsubscribe
from digest.readers.subscriptions import mark_address, set_subscription, subscriptions_of
from digest.send import audience_variants
from digest.store import open_db
from digest.tokens import CONFIRM_SALT, TokenSigner
from digest.transports.outbox import OutboxTransport
from digest.web import create_app

from conftest import add_stories, make_config, story

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


def reader_path(config, subscriber_id: int, newsletter: str = "daily") -> str:
    return f"/u/{TokenSigner(config.secret_key).make(subscriber_id, newsletter)}"


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
    response = client.post("/subscribe", data={"email": "new@example.com", "name": "Nia"})
    assert response.status_code == 200
    assert "Check your inbox" in page_text(response)
    assert find_subscriber(db, "new@example.com").status == "pending"
    assert status(db, "new@example.com") == "pending"
    message = confirmation_mail(config, "new@example.com")
    assert message["Subject"] == "Confirm your subscription to Test Daily"
    assert message["List-Id"] == '"Test Daily" <daily.news.test>'
    assert "Hello Nia," in message.get_body(("plain",)).get_content()
    assert confirm_path(message) in message.get_body(("html",)).get_content()


def test_a_pending_reader_is_not_mailed_until_they_confirm(client, db, config):
    add_stories(db, story(1))
    client.post("/subscribe", data={"email": "new@example.com"})
    assert audience_variants(db, "daily") == []
    response = client.get(confirm_path(confirmation_mail(config, "new@example.com")))
    assert response.status_code == 200
    assert "You are subscribed" in page_text(response)
    assert find_subscriber(db, "new@example.com").status == "active"
    assert audience_variants(db, "daily") == [("", 1)]
    assert db.execute("SELECT source FROM audit ORDER BY id DESC").fetchone()[0] == "link"


def test_confirming_twice_says_so_and_changes_nothing(client, db, config):
    client.post("/subscribe", data={"email": "new@example.com"})
    path = confirm_path(confirmation_mail(config, "new@example.com"))
    client.get(path)
    before = audit_count(db)
    assert "already subscribed" in page_text(client.get(path))
    assert audit_count(db) == before


def test_an_unsubscribe_token_confirms_no_one(client, db, config):
    client.post("/subscribe", data={"email": "new@example.com"})
    pending = find_subscriber(db, "new@example.com")
    token = TokenSigner(config.secret_key).make(pending.id, "daily")
    response = client.get(f"/confirm/{token}")
    assert response.status_code == 400
    assert status(db, "new@example.com") == "pending"


def test_a_confirmation_link_for_a_subscription_left_since_is_refused(client, db, config, ana):
    unsubscribe(db, "ana@example.com")
    token = TokenSigner(config.secret_key, CONFIRM_SALT).make(ana.id, "daily")
    response = client.get(f"/confirm/{token}")
    assert response.status_code == 400
    assert status(db, "ana@example.com") == "unsubscribed"


def test_a_repeat_sign_up_of_a_pending_address_resends_only_after_ten_minutes(db, config):
    assert (
        sign_up(db, config, "new@example.com", transport=OutboxTransport(config))
        == CONFIRMATION_SENT
    )
    path = config.outbox_dir / "confirmations" / "new@example.com.eml"
    path.unlink()
    assert sign_up(db, config, "new@example.com", transport=OutboxTransport(config)) == RATE_LIMITED
    assert not path.exists()
    later = utcnow() + timedelta(minutes=11)
    assert (
        sign_up(db, config, "new@example.com", now=later, transport=OutboxTransport(config))
        == CONFIRMATION_SENT
    )
    assert path.exists()


def test_a_confirmation_the_transport_could_not_send_may_be_asked_for_again(db, config, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    assert (
        sign_up(
            db,
            with_overrides(config, outbox_dir=blocked),
            "new@example.com",
            transport=OutboxTransport(with_overrides(config, outbox_dir=blocked)),
        )
        == NOT_SENT
    )
    assert (
        sign_up(db, config, "new@example.com", transport=OutboxTransport(config))
        == CONFIRMATION_SENT
    )


def test_the_resend_limit_is_kept_in_the_database_across_app_restarts(config, db):
    create_app(config).test_client().post("/subscribe", data={"email": "new@example.com"})
    (config.outbox_dir / "confirmations" / "new@example.com.eml").unlink()
    create_app(config).test_client().post("/subscribe", data={"email": "new@example.com"})
    assert confirmation_mail(config, "new@example.com") is None


def test_a_repeat_sign_up_of_an_active_reader_changes_nothing_and_tells_them(db, config, ana):
    before = audit_count(db)
    assert (
        sign_up(
            db, config, "ana@example.com", name="Someone Else", transport=OutboxTransport(config)
        )
        == ALREADY_SUBSCRIBED_SENT
    )
    message = confirmation_mail(config, "ana@example.com")
    assert message["Subject"] == "You are already subscribed to Test Daily"
    assert "/confirm/" not in message.get_body(("plain",)).get_content()
    assert find_subscriber(db, "ana@example.com").name == "Ana"
    assert audit_count(db) == before


def test_sign_up_of_an_unsubscribed_reader_starts_a_new_opt_in(client, db, config, ana):
    unsubscribe(db, "ana@example.com")
    client.post("/subscribe", data={"email": "ana@example.com"})
    assert status(db, "ana@example.com") == "pending"
    assert audience_variants(db, "daily") == []
    client.get(confirm_path(confirmation_mail(config, "ana@example.com")))
    assert status(db, "ana@example.com") == "active"


def test_the_sign_up_answer_is_the_same_whether_or_not_the_address_is_known(client, db):
    add_subscriber(db, "active@example.com")
    add_subscriber(db, "pending@example.com", status="pending")
    bounced = add_subscriber(db, "bounced@example.com")
    mark_address(db, bounced.id, "bounced", "webhook")
    add_subscriber(db, "gone@example.com")
    unsubscribe(db, "gone@example.com")
    forget(db, "forgotten@example.com")
    answers = set()
    for local in ("nobody", "active", "pending", "bounced", "gone", "forgotten"):
        response = client.post("/subscribe", data={"email": f"{local}@example.com"})
        assert response.status_code == 200
        answers.add(response.get_data(as_text=True).replace(local, "ADDRESS"))
    assert len(answers) == 1


def test_sign_up_sends_nothing_to_a_bounced_or_complained_address(client, db, config, ana):
    mark_address(db, ana.id, "complained", "webhook")
    client.post("/subscribe", data={"email": "ana@example.com"})
    assert confirmation_mail(config, "ana@example.com") is None
    assert find_subscriber(db, "ana@example.com").status == "complained"


@pytest.mark.parametrize(
    "form, message",
    [
        ({"email": "not-an-address"}, "invalid address"),
        ({"email": "new@example.com", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"email": "new@example.com", "topics": "astrology"}, "unknown topic"),
        ({"email": "new@example.com", "newsletter": "hourly"}, "No newsletter named"),
    ],
)
def test_a_bad_sign_up_field_shows_the_form_again_with_the_reason(client, db, form, message):
    response = client.post("/subscribe", data=form)
    assert response.status_code == 400
    assert 'role="alert"' in response.get_data(as_text=True)
    assert message in page_text(response)
    assert db.execute("SELECT COUNT(*) FROM subscribers").fetchone()[0] == 0


def test_sign_up_keeps_the_chosen_topics_and_time_zone(client, db):
    add_stories(db, story(1, category="science"), story(2, category="world"))
    client.post(
        "/subscribe",
        data={"email": "new@example.com", "topics": ["science"], "timezone": "Asia/Tokyo"},
    )
    reader = find_subscriber(db, "new@example.com")
    assert (reader.topics, reader.timezone) == (("science",), "Asia/Tokyo")


# The reader's page and unsubscribing


def test_opening_the_unsubscribe_page_never_unsubscribes(client, db, config, ana):
    before = audit_count(db)
    for _ in range(2):
        assert client.get(reader_path(config, ana.id)).status_code == 200
        assert client.head(reader_path(config, ana.id)).status_code == 200
    assert status(db, "ana@example.com") == "active"
    assert audit_count(db) == before


def test_the_unsubscribe_page_has_one_button_and_the_preferences_form(client, config, ana):
    html = client.get(reader_path(config, ana.id)).get_data(as_text=True)
    assert html.count("<button") == 2  # unsubscribe, save preferences
    assert "Unsubscribe from Test Daily" in html
    assert 'id="preferences"' in html
    assert "ana@example.com" in html and "<script" not in html


def test_one_click_as_gmail_sends_it_unsubscribes_with_200_and_no_redirect(client, db, config, ana):
    response = client.post(reader_path(config, ana.id), **GMAIL_ONE_CLICK)
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert "Set-Cookie" not in response.headers
    assert status(db, "ana@example.com") == "unsubscribed"
    assert audience_variants(db, "daily") == []
    source = db.execute("SELECT source, newsletter FROM audit ORDER BY id DESC LIMIT 2")
    assert set(source.fetchall()) == {("one-click", "daily"), ("one-click", None)}


def test_one_click_twice_is_harmless(client, db, config, ana):
    client.post(reader_path(config, ana.id), **GMAIL_ONE_CLICK)
    before = audit_count(db)
    assert client.post(reader_path(config, ana.id), **GMAIL_ONE_CLICK).status_code == 200
    assert audit_count(db) == before


def test_the_pages_button_unsubscribes_and_shows_a_confirmation(client, db, config, ana):
    response = client.post(reader_path(config, ana.id))
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
    client.post(reader_path(config, ana.id, "weekly"), **GMAIL_ONE_CLICK)
    assert subscriptions_of(db, ana.id) == {"daily": "active", "weekly": "unsubscribed"}
    assert find_subscriber(db, "ana@example.com").status == "active"
    db.close()


@pytest.mark.parametrize(
    "token",
    [
        lambda config, ana: TokenSigner(config.secret_key).make(ana.id, "daily")[:-3] + "AAA",
        lambda config, ana: TokenSigner("another-key").make(ana.id, "daily"),
        lambda config, ana: f"{ana.id}.daily",
        lambda config, ana: TokenSigner(config.secret_key, CONFIRM_SALT).make(ana.id, "daily"),
        lambda config, ana: TokenSigner(config.secret_key).make(ana.id + 1, "daily"),
    ],
    ids=["forged-signature", "other-key", "unsigned", "confirmation-token", "unknown-reader"],
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
        reader_path(config, ana.id) + "/preferences",
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
    client.post(reader_path(config, ana.id) + "/preferences", data={"timezone": "UTC"})
    assert status(db, "ana@example.com") == "unsubscribed"
    assert find_subscriber(db, "ana@example.com").status == "unsubscribed"


def test_ticking_the_newsletter_again_resubscribes(client, db, config, ana):
    unsubscribe(db, "ana@example.com")
    client.post(
        reader_path(config, ana.id) + "/preferences",
        data={"timezone": "UTC", "newsletters": "daily"},
    )
    assert status(db, "ana@example.com") == "active"


def test_a_bad_preference_is_refused_with_the_reason_and_nothing_changes(client, db, config, ana):
    response = client.post(
        reader_path(config, ana.id) + "/preferences",
        data={"timezone": "Mars/Olympus", "newsletters": "daily"},
    )
    assert response.status_code == 400
    assert "unknown time zone 'Mars/Olympus'" in page_text(response)
    assert find_subscriber(db, "ana@example.com").timezone == "UTC"


# The app around the routes


def test_pages_keep_their_token_out_of_referrers_and_caches(client, config, ana):
    headers = client.get(reader_path(config, ana.id)).headers
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
