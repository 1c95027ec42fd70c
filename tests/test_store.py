"""The store: WAL mode, ordered migrations, and story upserts that respect the editor."""

from __future__ import annotations

import pytest
from sqlite_utils import Database

from digest.delivery.ledger import claim_batch, queue_audience
from digest.edition.build import Edition, save_edition
from digest.errors import StoreError
from digest.newsroom.stories import set_story_editorial
from digest.readers.subscribers import add_subscriber
from digest.store import migrations, open_db, schema_version, write_transaction

from helpers import EDITION_TIME, add_stories, story

ALL_MIGRATIONS = [m.name for m in migrations.pending(Database(memory=True))]


def test_a_new_database_is_in_wal_mode_with_every_migration_applied(tmp_path):
    db = open_db(tmp_path / "new.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert schema_version(db) == ALL_MIGRATIONS
    assert {"stories", "subscribers", "editions", "deliveries", "leases"} <= set(db.table_names())


def test_a_database_at_the_first_schema_upgrades_in_place_keeping_its_rows(tmp_path):
    path = tmp_path / "old.db"
    old = Database(path)
    migrations.apply(old, stop_before=ALL_MIGRATIONS[1:])
    assert schema_version(old) == ["m001_initial"]
    old.execute(
        "INSERT INTO stories (url, title, published_at, ingested_at, updated_at) "
        "VALUES ('https://news.test/kept', 'Kept', '2026-11-26T06:00:00Z', '', '')"
    )
    old.close()
    db = open_db(path)
    assert schema_version(db) == ALL_MIGRATIONS
    assert db.execute("SELECT title FROM stories").fetchone()[0] == "Kept"


def test_opening_something_that_is_not_a_database_is_a_clear_error(tmp_path):
    bogus = tmp_path / "notes.db"
    bogus.write_text("these are my notes, not a database\n" * 20)
    with pytest.raises(StoreError, match=r"notes\.db"):
        open_db(bogus)


def test_the_same_story_twice_is_stored_once(db):
    row = story(2)
    add_stories(db, row)
    add_stories(db, row)
    assert db.execute("SELECT COUNT(*) FROM stories").fetchone()[0] == 1


def test_an_editors_pin_and_score_survive_a_reread_of_the_feed(db):
    row = story(2, score=1)
    [story_id] = add_stories(db, row)
    set_story_editorial(db, str(story_id), pinned=True, score=8)
    add_stories(db, row | {"title": "Updated title"})
    title, score, pinned = db.execute(
        "SELECT title, score, pinned FROM stories WHERE id = ?", [story_id]
    ).fetchone()
    assert (title, score, pinned) == ("Updated title", 8, 1)


def test_readers_queued_before_the_ledger_kept_names_are_still_greeted_by_name(db):
    add_subscriber(db, "ana@example.com", name="Ana")
    with write_transaction(db):
        edition = save_edition(
            db, Edition("daily", EDITION_TIME, "topics:*", (), None, "S", "", "<p>", "t", ())
        )
        queue_audience(db, edition.id, "daily", "")
    # As a send begun before migration m006 left its queued rows.
    db.execute("UPDATE deliveries SET name = NULL")

    batch = claim_batch(db, edition.id, "daily", 10)

    assert [(r.email, r.name) for r in batch.recipients] == [("ana@example.com", "Ana")]
