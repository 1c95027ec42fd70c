"""Shared fixtures: a config and a real SQLite file in a temporary folder, and story helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import pytest

from digest.config import PROJECT_TEMPLATES, Config, parse_config
from digest.store import open_db, upsert_stories

EDITION_TIME = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
_serial = count(1)


def make_config(tmp_path: Path, newsletter: dict | None = None, **sections) -> Config:
    data = {
        "site": {
            "name": "Test Courier",
            "url": "https://news.test",
            "postal_address": "1 Test Street, Testville",
            "from_email": "digest@news.test",
            "from_name": "Test Courier",
        },
        "store": {"path": "digest.db"},
        "templates": {"path": str(PROJECT_TEMPLATES)},
        "transport": {"kind": "outbox", "outbox": "outbox", "secret_key": "test-secret"},
        "newsletters": {
            "daily": {"title": "Test Daily", "timezone": "UTC", "schedule": "0 7 * * *"}
            | (newsletter or {})
        },
    } | sections
    return parse_config(data, tmp_path / "digest.toml", env={})


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
def db(config: Config):
    database = open_db(config.db_path)
    yield database
    database.close()


def story(hours_ago: float = 1.0, *, at: datetime = EDITION_TIME, **fields) -> dict:
    """A story row as ingest hands it to the store, published `hours_ago` before `at`."""
    n = next(_serial)
    return {
        "url": f"https://news.test/story-{n}",
        "guid": f"guid-{n}",
        "title": f"Story {n}",
        "summary": f"Summary of story {n}.",
        "author": "A. Reporter",
        "category": "world",
        "published_at": at - timedelta(hours=hours_ago),
    } | fields


def add_stories(db, *stories: dict) -> list[int]:
    upsert_stories(db, stories, "test")
    return [
        db.execute("SELECT id FROM stories WHERE url = ?", [s["url"]]).fetchone()[0]
        for s in stories
    ]
