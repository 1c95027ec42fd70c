"""What tests import: a test config and its TOML file, story rows, Chromium's path, servers."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import pytest

from digest.config import PROJECT_TEMPLATES, Config, parse_config
from digest.newsroom.stories import upsert_stories

# The real-process helpers live in servers.py (the benchmarks use them without pytest).
from servers import CLEAN_ENV as CLEAN_ENV
from servers import digest_server as digest_server
from servers import free_port as free_port
from servers import start_digest_server as start_digest_server

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
def small_disk(folder: Path, size: str = "256k") -> Iterator[Path]:
    """`folder` as a tmpfs of `size` (a disk that fills up), for root where mount works."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


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


def run_digest(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m digest ARGS` as a real process in `cwd`, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "digest", *args],
        cwd=cwd,
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
    )


def sent_demo(folder: Path, now: str) -> Path:
    """`digest demo` sent through the outbox in `folder/demo`, under a config whose secret
    is not the placeholder; the demo's folder."""
    write_config(folder)
    result = run_digest("demo", "--dir", "demo", "--now", now, cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / "demo"
