"""Shared fixtures (a config, a real SQLite file, one Chromium) and the quick tier's rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.config import Config
from digest.store import open_db

from helpers import CHROMIUM, CHROMIUM_ARGS, make_config

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


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
def db(config: Config):
    database = open_db(config.db_path)
    yield database
    database.close()


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
