"""Shared fixtures (a config, a real SQLite file, one Chromium) and the quick tier's rule."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from digest.config import Config
from digest.store import open_db

from helpers import CHROMIUM, CHROMIUM_ARGS, make_config

# `make test-fast` (the quick tier) runs `pytest -m "not slow"`. Slow, without anyone listing
# them: every test that uses one of SLOW_FIXTURES, perhaps through another fixture (Chromium, and
# test_run's simulated weeks of cron runs), and every property-based (hypothesis) search. Tests
# that start our own programs as real processes carry `@pytest.mark.slow` (or their module's
# `pytestmark`), and `_real_processes_only_in_slow_tests` fails any that forgets it. So do the
# few that wait out a real timeout of half a second or more (a slow answer, a trickling feed).
SLOW_FIXTURES = {"browser", "week_every_five_minutes", "week_every_hour"}
# The programs whose start-up (imports, a venv, a build) costs a second or more.
SLOW_PROGRAMS = {"digest", "digest-run", "gunicorn", "pip", "install-crontab"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or getattr(
            getattr(item, "obj", None), "is_hypothesis_test", False
        ):
            item.add_marker(pytest.mark.slow)


def starts_a_real_program(args) -> bool:
    """Whether a command runs one of our programs, or Python on a script or module (not `-c`)."""
    argv = [str(arg) for arg in ([args] if isinstance(args, str | os.PathLike) else args)]
    program = Path(argv[0].split()[0]).name if argv else ""
    if program.startswith("python"):
        return len(argv) > 1 and argv[1] != "-c"
    return program in SLOW_PROGRAMS


@pytest.fixture(autouse=True)
def _real_processes_only_in_slow_tests(request: pytest.FixtureRequest, monkeypatch) -> None:
    """A test that starts a real program but is not marked slow fails, naming the fix."""
    if request.node.get_closest_marker("slow"):
        return
    start = subprocess.Popen.__init__

    def start_if_quick(self, args, *rest, **options):
        if starts_a_real_program(args):
            pytest.fail(
                f"{request.node.nodeid} starts a real process ({args!r}): mark it "
                "@pytest.mark.slow so that `make test-fast` leaves it out"
            )
        start(self, args, *rest, **options)

    monkeypatch.setattr(subprocess.Popen, "__init__", start_if_quick)


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database made by `open_db` once, at today's schema, for tests to start from a copy."""
    path = tmp_path_factory.mktemp("migrated") / "digest.db"
    open_db(path).close()
    return path


@pytest.fixture
def config(tmp_path: Path, migrated_database: Path) -> Config:
    """The test config; its database is already made (a copy: migrating costs ~12 ms a test)."""
    config = make_config(tmp_path)
    shutil.copyfile(migrated_database, config.db_path)
    return config


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
