"""Privacy: a reader's data exported as JSON, and forgetting them for good."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from digest.delivery.send import send_newsletter
from digest.delivery.transports.outbox import OutboxTransport
from digest.errors import SubscriberError
from digest.readers.privacy import export_data, forget
from digest.readers.signup import REFUSED, process_signups, sign_up
from digest.readers.subscribers import add_subscriber, find_subscriber, import_csv, unsubscribe
from digest.readers.suppression import is_suppressed

from helpers import EDITION_TIME, add_stories, story

NOW = EDITION_TIME + timedelta(minutes=3)


@pytest.fixture
def mailed(db, config):
    """Ana, with a topic, one delivery and a newsletter left; Bo, who must stay untouched."""
    add_stories(db, story(1))
    add_subscriber(db, "ana@example.com", "Ana", [], "Europe/London")
    add_subscriber(db, "bo@example.com", "Bo")
    send_newsletter(db, config, None, NOW, transport=OutboxTransport(config))
    unsubscribe(db, "ana@example.com", "daily")
    return db


def rows_naming(db, subscriber_id: int, email: str) -> int:
    return sum(
        db.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", [value]).fetchone()[0]
        for table, column, value in (
            ("subscribers", "email", email),
            ("subscriptions", "subscriber_id", subscriber_id),
            ("deliveries", "subscriber_id", subscriber_id),
            ("deliveries", "email", email),
            ("audit", "subscriber_id", subscriber_id),
        )
    )


def test_export_data_holds_the_profile_deliveries_subscriptions_and_audit(mailed):
    data = export_data(mailed, "ANA@example.com")
    assert data["profile"]["email"] == "ana@example.com"
    assert data["profile"]["timezone"] == "Europe/London"
    assert [d["status"] for d in data["deliveries"]] == ["sent"]
    assert [(s["newsletter"], s["status"]) for s in data["subscriptions"]] == [
        ("daily", "unsubscribed")
    ]
    assert {row["source"] for row in data["audit"]} == {"cli"}
    assert all(row["subscriber_id"] == data["profile"]["id"] for row in data["audit"])
    json.dumps(data)  # it is plain JSON


def test_forget_deletes_every_row_about_the_reader_and_only_theirs(mailed):
    ana = find_subscriber(mailed, "ana@example.com")
    report = forget(mailed, "ana@example.com")
    removed = {table: n for table, n in report.removed.items() if n}
    assert removed == {"profile": 1, "deliveries": 1, "subscriptions": 1, "audit": 4}
    assert rows_naming(mailed, ana.id, "ana@example.com") == 0
    assert find_subscriber(mailed, "bo@example.com") is not None
    assert "ana@example.com" not in json.dumps(
        [list(mailed.query(f"SELECT * FROM [{t}]")) for t in mailed.table_names()]
    ), "the address is stored nowhere, not even in the audit or suppression list"


def test_forget_keeps_one_anonymous_audit_row_and_the_salted_hash(mailed):
    forget(mailed, "ana@example.com")
    [row] = mailed.execute(
        "SELECT subscriber_id, action, source FROM audit WHERE action = 'forgotten'"
    ).fetchall()
    assert row == (None, "forgotten", "cli")
    assert is_suppressed(mailed, "Ana@Example.com")
    assert not is_suppressed(mailed, "bo@example.com")


def test_forget_deletes_the_readers_files_from_the_outbox(mailed, config):
    report = forget(mailed, "ana@example.com", config.outbox_dir)
    assert report.outbox_files == 1
    assert [p.name for p in config.outbox_dir.rglob("*.eml")] == ["bo@example.com.eml"]


def test_forget_also_deletes_a_temp_file_a_full_disk_left_in_the_outbox(mailed, config):
    [edition] = [p for p in config.outbox_dir.iterdir() if p.is_dir()]
    (edition / ".ana@example.com.eml.tmp").write_bytes(b"To: ana@example.com\r\n")
    report = forget(mailed, "ana@example.com", config.outbox_dir)
    assert report.outbox_files == 2
    assert sorted(p.name for p in edition.iterdir()) == ["bo@example.com.eml"]


def test_forget_then_reimport_is_refused_and_reported(mailed, tmp_path):
    forget(mailed, "ana@example.com")
    path = tmp_path / "again.csv"
    path.write_text("email,name\nana@example.com,Ana\ncy@example.com,Cy\n", encoding="utf-8")
    report = import_csv(mailed, path)
    assert report.suppressed == ["line 2: ana@example.com was forgotten at their request"]
    assert report.added == 1
    assert find_subscriber(mailed, "ana@example.com") is None


def test_forget_then_add_is_refused(mailed):
    forget(mailed, "ana@example.com")
    with pytest.raises(SubscriberError, match="forgotten"):
        add_subscriber(mailed, "ANA@example.com")


def test_forget_then_sign_up_sends_nothing_and_adds_no_one(mailed, config):
    forget(mailed, "ana@example.com")
    sign_up(mailed, config, "ana@example.com")
    assert process_signups(mailed, config, OutboxTransport(config)) == [REFUSED]
    assert find_subscriber(mailed, "ana@example.com") is None
    assert not (config.outbox_dir / "confirmations").exists()


def test_forgetting_an_address_not_on_the_list_still_keeps_it_off(db):
    report = forget(db, "zed@example.com")
    assert "was not on the list" in report.summary()
    with pytest.raises(SubscriberError, match="forgotten"):
        add_subscriber(db, "zed@example.com")


def test_the_stories_a_reader_clicked_are_exported_and_forgotten_with_them(mailed):
    ana = find_subscriber(mailed, "ana@example.com")
    bo = find_subscriber(mailed, "bo@example.com")
    for reader in (ana, bo):
        delivery_id, edition_id = mailed.execute(
            "SELECT id, edition_id FROM deliveries WHERE subscriber_id = ?", [reader.id]
        ).fetchone()
        mailed.execute(
            "INSERT INTO story_clicks (delivery_id, story_id, edition_id, first_at, clicks) "
            "VALUES (?, 1, ?, 0, 1)",
            [delivery_id, edition_id],
        )
    assert len(export_data(mailed, "ana@example.com")["story_clicks"]) == 1
    report = forget(mailed, "ana@example.com")
    assert report.removed["story_clicks"] == 1
    assert mailed.execute("SELECT COUNT(*) FROM story_clicks").fetchone()[0] == 1, "Bo's stays"
