"""Per-newsletter subscriptions: who gets which newsletter, the audit trail, import and the list."""

from __future__ import annotations

import csv
from datetime import timedelta

import pytest
from sqlite_utils import Database

from digest.delivery.ledger import audience_values, audience_variants
from digest.delivery.send import send_newsletter
from digest.delivery.transports.outbox import OutboxTransport
from digest.readers.subscribers import (
    add_subscriber,
    count_by_status,
    export_csv,
    get_subscriber,
    import_csv,
    list_subscribers,
    unsubscribe,
)
from digest.readers.subscriptions import mark_address, set_subscription, subscriptions_of
from digest.run import reader_timezones
from digest.store import migrations, open_db

from helpers import EDITION_TIME, add_stories, story

NOW = EDITION_TIME + timedelta(minutes=3)
AFTER_M001 = [m.name for m in migrations.pending(Database(memory=True))][1:]


def readers(db, newsletter: str) -> int:
    return sum(n for _, n in audience_variants(db, newsletter))


def audit_sources(db, email: str) -> list[tuple]:
    subscriber = get_subscriber(db, email)
    return db.execute(
        "SELECT action, newsletter, old_status, new_status, source FROM audit "
        "WHERE subscriber_id = ? ORDER BY id",
        [subscriber.id],
    ).fetchall()


def write_csv(tmp_path, text: str):
    path = tmp_path / "list.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_reader_gets_only_the_newsletters_they_are_subscribed_to(db):
    add_subscriber(db, "ana@example.com", newsletter="daily")
    add_subscriber(db, "bo@example.com", newsletter="weekly")
    assert readers(db, "daily") == 1
    assert readers(db, "weekly") == 1


def test_only_topic_sets_and_time_zones_with_someone_to_mail_get_an_edition(db):
    add_subscriber(db, "ana@example.com", topics=["world"], timezone="UTC")
    add_subscriber(db, "bo@example.com", topics=["science"], timezone="Asia/Tokyo")
    unsubscribe(db, "bo@example.com", "daily")
    cy = add_subscriber(db, "cy@example.com", topics=["sport"], timezone="Europe/Paris")
    mark_address(db, cy.id, "bounced", "webhook")
    add_subscriber(
        db, "di@example.com", topics=["culture"], timezone="Asia/Tokyo", newsletter="weekly"
    )

    assert reader_timezones(db, "daily") == ("UTC",)
    assert audience_values(db, "daily", "topics") == ["world"]
    assert audience_values(db, "daily", "topics", "Asia/Tokyo") == []
    assert audience_values(db, "weekly", "topics", "Asia/Tokyo") == ["culture"]


def test_leaving_one_newsletter_keeps_the_others(db):
    ana = add_subscriber(db, "ana@example.com", newsletter="daily")
    set_subscription(db, ana.id, "weekly", "active", "cli")
    unsubscribe(db, "ana@example.com", "daily")
    assert subscriptions_of(db, get_subscriber(db, "ana@example.com").id) == {
        "daily": "unsubscribed",
        "weekly": "active",
    }
    assert get_subscriber(db, "ana@example.com").status == "active"
    assert (readers(db, "daily"), readers(db, "weekly")) == (0, 1)


def test_leaving_every_newsletter_makes_the_address_unsubscribed(db):
    add_subscriber(db, "ana@example.com")
    unsubscribe(db, "ana@example.com")
    assert get_subscriber(db, "ana@example.com").status == "unsubscribed"


def test_a_bounced_or_complained_address_gets_no_newsletter_whatever_its_subscriptions(db):
    for address, status in (("bo@example.com", "bounced"), ("cy@example.com", "complained")):
        subscriber = add_subscriber(db, address)
        assert mark_address(db, subscriber.id, status, "webhook")
        assert subscriptions_of(db, subscriber.id) == {"daily": "active"}
    assert readers(db, "daily") == 0


def test_send_mails_the_readers_of_that_newsletter_only(db, config):
    add_stories(db, story(1))
    add_subscriber(db, "ana@example.com")
    add_subscriber(db, "bo@example.com")
    add_subscriber(db, "cy@example.com", newsletter="weekly")
    unsubscribe(db, "bo@example.com", "daily")
    send_newsletter(db, config, "daily", NOW, transport=OutboxTransport(config))
    assert [p.name for p in config.outbox_dir.rglob("*.eml")] == ["ana@example.com.eml"]


def test_every_change_is_audited_with_its_source_and_newsletter(db):
    add_subscriber(db, "ana@example.com")
    unsubscribe(db, "ana@example.com", "daily", source="webhook")
    assert audit_sources(db, "ana@example.com") == [
        ("address", None, None, "active", "cli"),
        ("subscription", "daily", None, "active", "cli"),
        ("subscription", "daily", "active", "unsubscribed", "webhook"),
        ("address", None, "active", "unsubscribed", "webhook"),
    ]


def test_the_migration_subscribes_existing_readers_to_each_newsletter_it_has_sent(tmp_path):
    path = tmp_path / "old.db"
    old = Database(path)
    migrations.apply(old, stop_before=AFTER_M001)
    for n, status in enumerate(("active", "unsubscribed", "bounced")):
        old.execute(
            "INSERT INTO subscribers (email, status, created_at, updated_at) VALUES (?, ?, '', '')",
            [f"r{n}@example.com", status],
        )
    for newsletter in ("morning", "weekend"):
        old.execute(
            "INSERT INTO editions (newsletter, slot_at, variant, subject, html, text, story_ids,"
            " created_at) VALUES (?, '2026-11-26T07:00:00Z', 'topics:*', 's', 'h', 't', '[]', '')",
            [newsletter],
        )
    old.close()
    db = open_db(path)
    rows = db.execute(
        "SELECT s.email, sub.newsletter, sub.status FROM subscriptions sub "
        "JOIN subscribers s ON s.id = sub.subscriber_id ORDER BY 1, 2"
    ).fetchall()
    assert rows == [
        ("r0@example.com", "morning", "active"),
        ("r0@example.com", "weekend", "active"),
        ("r1@example.com", "morning", "unsubscribed"),
        ("r1@example.com", "weekend", "unsubscribed"),
        ("r2@example.com", "morning", "active"),
        ("r2@example.com", "weekend", "active"),
    ]
    assert readers(db, "morning") == 1


def test_the_migration_subscribes_readers_of_a_database_that_never_sent_to_daily(tmp_path):
    path = tmp_path / "old.db"
    old = Database(path)
    migrations.apply(old, stop_before=AFTER_M001)
    old.execute(
        "INSERT INTO subscribers (email, status, created_at, updated_at) "
        "VALUES ('ana@example.com', 'active', '', '')"
    )
    old.close()
    db = open_db(path)
    assert readers(db, "daily") == 1


def test_import_subscribes_new_readers_to_the_chosen_newsletter(db, tmp_path):
    import_csv(db, write_csv(tmp_path, "email\nana@example.com\n"), newsletter="weekly")
    assert subscriptions_of(db, get_subscriber(db, "ana@example.com").id) == {"weekly": "active"}
    assert audit_sources(db, "ana@example.com")[-1] == (
        "subscription",
        "weekly",
        None,
        "active",
        "import",
    )


def test_import_adds_the_newsletter_to_active_readers_already_on_the_list(db, tmp_path):
    add_subscriber(db, "ana@example.com")
    report = import_csv(db, write_csv(tmp_path, "email\nana@example.com\n"), newsletter="weekly")
    assert report.updated == 1
    assert readers(db, "weekly") == 1


@pytest.mark.parametrize("status", ["bounced", "complained"])
def test_import_never_reactivates_a_bounced_or_complained_address(db, tmp_path, status):
    subscriber = add_subscriber(db, "ana@example.com")
    mark_address(db, subscriber.id, status, "webhook")
    report = import_csv(db, write_csv(tmp_path, "email\nana@example.com\n"))
    assert report.suppressed == [f"line 2: ana@example.com is {status}"]
    assert get_subscriber(db, "ana@example.com").status == status
    assert readers(db, "daily") == 0


def test_import_does_not_resubscribe_a_reader_who_left_that_newsletter(db, tmp_path):
    add_subscriber(db, "ana@example.com", newsletter="weekly")
    import_csv(db, write_csv(tmp_path, "email\nana@example.com\n"), newsletter="daily")
    unsubscribe(db, "ana@example.com", "daily")
    report = import_csv(db, write_csv(tmp_path, "email\nana@example.com\n"), newsletter="daily")
    assert report.suppressed == ["line 2: ana@example.com is unsubscribed from daily"]
    assert readers(db, "daily") == 0


def test_import_does_not_add_a_new_newsletter_to_a_reader_who_left_everything(db, tmp_path):
    add_subscriber(db, "ana@example.com")
    unsubscribe(db, "ana@example.com")
    report = import_csv(db, write_csv(tmp_path, "email\nana@example.com\n"), newsletter="weekly")
    assert report.suppressed == ["line 2: ana@example.com is unsubscribed"]
    assert readers(db, "weekly") == 0


def test_list_and_count_for_one_newsletter_show_each_readers_status_for_it(db):
    add_subscriber(db, "ana@example.com")
    add_subscriber(db, "bo@example.com")
    add_subscriber(db, "cy@example.com", newsletter="weekly")
    unsubscribe(db, "bo@example.com", "daily")
    listed = [(s.email, s.status) for s in list_subscribers(db, newsletter="daily")]
    assert listed == [("ana@example.com", "active"), ("bo@example.com", "unsubscribed")]
    counts = count_by_status(db, "daily")
    assert (counts["active"], counts["unsubscribed"], counts["pending"]) == (1, 1, 0)
    assert count_by_status(db)["active"] == 2


def test_export_writes_the_whole_list_with_statuses_and_newsletters(db, tmp_path):
    add_subscriber(db, "ana@example.com", "Ana", ["world"], "Europe/London")
    add_subscriber(db, "bo@example.com", '=HYPERLINK("http://evil")')
    unsubscribe(db, "bo@example.com")
    assert export_csv(db, tmp_path / "out.csv") == 2
    with (tmp_path / "out.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["email"], r["status"], r["newsletters"]) for r in rows] == [
        ("ana@example.com", "active", "daily:active"),
        ("bo@example.com", "unsubscribed", "daily:unsubscribed"),
    ]
    assert (rows[0]["topics"], rows[0]["timezone"]) == ("world", "Europe/London")
    assert rows[1]["name"].startswith("'="), "a formula is exported as text"


def test_an_export_imports_back_without_changing_anyone(db, tmp_path):
    add_subscriber(db, "ana@example.com", "Ana", ["world"])
    add_subscriber(db, "bo@example.com")
    unsubscribe(db, "bo@example.com")
    export_csv(db, tmp_path / "out.csv")
    report = import_csv(db, tmp_path / "out.csv")
    assert (report.added, report.updated, report.unchanged) == (0, 0, 2)
    assert get_subscriber(db, "bo@example.com").status == "unsubscribed"
