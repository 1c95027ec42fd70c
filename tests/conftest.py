"""Shared fixtures: a config and a real SQLite file in a temporary folder, and story helpers."""

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
from digest.store import open_db
from digest.stories import upsert_stories

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
# `make test-fast` (the quick tier) leaves out tests marked slow: these modules (browsers,
# real processes), these tests (several processes, or a simulated week), and every
# property-based (hypothesis) test.
SLOW_MODULES = {
    "test_browser",
    "test_web_browser",
    "test_send_crash",
    "test_cron",
    "test_serve",
    "test_wsgi",
}
SLOW_TESTS = {
    "test_each_reader_gets_exactly_one_digest_for_each_local_day",
    "test_runs_every_five_minutes_and_every_hour_deliver_the_same",
    "test_two_runs_started_together_deliver_once",
    "test_worker_processes_send_the_same_as_threads",
    "test_concurrent_sends_from_two_processes_are_all_recorded",
    "test_the_cli_and_the_web_app_sign_with_the_env_files_key_and_use_its_database",
    "test_status_prints_a_retry_command_that_works_from_any_folder_without_digest_on_path",
    "test_the_sendgrid_key_and_host_in_the_env_file_reach_a_real_send",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        function = getattr(item, "obj", None)
        if (
            (module is not None and module.__name__ in SLOW_MODULES)
            or getattr(item, "originalname", item.name) in SLOW_TESTS
            or getattr(function, "is_hypothesis_test", False)
        ):
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture(scope="session")
def browser():
    """One real Chromium for the session, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder for commands, with no DIGEST_* variables leaking in."""
    monkeypatch.chdir(tmp_path)
    for name in ("DIGEST_CONFIG", "DIGEST_DB", "DIGEST_TRANSPORT", "DIGEST_OUTBOX"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@contextmanager
def served(app) -> Iterator[str]:
    """A WSGI app on a real, ephemeral port of 127.0.0.1, served from a thread: its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
