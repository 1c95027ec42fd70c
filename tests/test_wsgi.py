"""gunicorn over `digest.wsgi:app`, as real processes: it fails at boot, not per request, when
its config or secret is missing, and serves the readers' pages when both are there."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from helpers import write_config

# The quick tier leaves this module out: every test boots a real gunicorn.
pytestmark = pytest.mark.slow

pytest.importorskip("gunicorn", reason="gunicorn comes with the [web] extra")

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
REAL_SITE = {
    "name": "The Halden Courier",
    "url": "https://news.halden-courier.no",
    "from_email": "digest@halden-courier.no",
}


def gunicorn(cwd: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "2", "-b", "127.0.0.1:0", "digest.wsgi:app"],
        cwd=cwd,
        env=CLEAN_ENV | env,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def newsroom(tmp_path) -> Path:
    write_config(tmp_path, transport={"kind": "outbox"}, site=REAL_SITE)
    return tmp_path


def test_gunicorn_stops_at_boot_without_a_config(newsroom):
    process = gunicorn(newsroom)
    _, errors = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "DIGEST_CONFIG is not set" in errors


def test_gunicorn_stops_at_boot_with_a_weak_secret(newsroom):
    process = gunicorn(newsroom, DIGEST_CONFIG=str(newsroom / "digest.toml"))
    _, errors = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "The secret key (DIGEST_SECRET_KEY) is still the shipped placeholder" in errors


def test_gunicorn_serves_with_the_secret_from_the_env_file(newsroom):
    (newsroom / ".env").write_text("DIGEST_SECRET_KEY=" + "k" * 48 + "\n")
    process = gunicorn(Path("/"), DIGEST_CONFIG=str(newsroom / "digest.toml"))
    try:
        assert process.stderr is not None
        for line in process.stderr:
            listening = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", line)
            if listening:
                break
        else:
            pytest.fail(f"gunicorn exited ({process.wait()}) without listening")
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with no_proxy.open(listening.group(1) + "/subscribe", timeout=30) as response:
            assert response.status == 200
            assert "The Halden Courier" in response.read().decode()
        # The database the app made holds readers' addresses: its user's alone.
        assert (newsroom / "digest.db").stat().st_mode & 0o077 == 0
    finally:
        process.terminate()
        process.wait(timeout=30)
        assert process.stderr is not None
        process.stderr.close()
