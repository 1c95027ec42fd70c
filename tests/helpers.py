"""What tests import: a test config and its TOML file, story rows, Chromium's path, servers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import pytest

from digest.config import PROJECT_TEMPLATES, Config, parse_config
from digest.newsroom.stories import upsert_stories

EDITION_TIME = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
CHROMIUM = Path("/usr/bin/chromium")
# Headless Debian Chromium as root, kept off the (closed) network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)"
)
_serial = count(1)


def config_data(newsletter: dict | None = None, **sections) -> dict:
    """A test project's config: the test site, the project's templates, a `daily` newsletter."""
    return {
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


def make_config(tmp_path: Path, newsletter: dict | None = None, **sections) -> Config:
    return parse_config(config_data(newsletter, **sections), tmp_path / "digest.toml", env={})


def write_config(folder: Path, newsletter: dict | None = None, **sections) -> Path:
    """Write `config_data` as `folder/digest.toml`, for commands run in that folder."""
    lines = []
    for section, table in config_data(newsletter, **sections).items():
        tables = table.items() if section == "newsletters" else [(None, table)]
        for name, values in tables:
            lines.append(f"[{section}.{name}]" if name else f"[{section}]")
            # JSON's strings, numbers, booleans and lists of strings are TOML's too.
            lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
            lines.append("")
    path = folder / "digest.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


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


@contextmanager
def served(app) -> Iterator[str]:
    """A WSGI app on a real, ephemeral port of 127.0.0.1, served from a thread: its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
