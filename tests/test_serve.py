"""`digest serve` as a real process: one-click over real HTTP with the URL from an outbox .eml."""

from __future__ import annotations

import email
import email.policy
import urllib.request
from urllib.parse import urlsplit, urlunsplit

import pytest

from digest.store import open_db

from helpers import run_digest, sent_demo, write_config
from servers import digest_server

# The quick tier leaves this module out: every test runs `digest serve` as a real process.
pytestmark = pytest.mark.slow

NOW = "2026-11-26T07:05:00Z"


@pytest.fixture
def demo(tmp_path):
    """The demo sent through the outbox, with a config whose secret is not the placeholder."""
    return sent_demo(tmp_path, NOW)


@pytest.fixture
def server(demo, tmp_path):
    with digest_server("--db", str(demo / "digest.db"), "serve", cwd=tmp_path) as running:
        yield running.port


def test_one_click_over_real_http_with_the_url_from_an_eml_unsubscribes(demo, server):
    eml = sorted((demo / "outbox").rglob("*.eml"))[0]
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    address = message["To"].addresses[0].addr_spec
    url = urlsplit(message["List-Unsubscribe"].strip("<>"))
    assert url.netloc == "news.test"
    local = urlunsplit(url._replace(scheme="http", netloc=f"127.0.0.1:{server}"))
    request = urllib.request.Request(
        local,
        data=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with no_proxy.open(request, timeout=10) as response:
        assert response.status == 200
        assert response.url == local, "no redirect"

    db = open_db(demo / "digest.db")
    try:
        status, address_status = db.execute(
            "SELECT sub.status, s.status FROM subscriptions sub "
            "JOIN subscribers s ON s.id = sub.subscriber_id "
            "WHERE s.email = ? AND sub.newsletter = 'daily'",
            [address],
        ).fetchone()
        source = db.execute("SELECT source FROM audit ORDER BY id DESC").fetchone()[0]
    finally:
        db.close()
    assert (status, address_status, source) == ("unsubscribed", "unsubscribed", "one-click")


def test_serve_refuses_the_placeholder_secret_off_loopback(tmp_path):
    (tmp_path / "digest.toml").write_text('[newsletters.daily]\ntitle = "Test Daily"\n')
    result = run_digest("serve", "--host", "0.0.0.0", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "DIGEST_SECRET_KEY" in result.stderr.strip().splitlines()[-1]


def test_serve_does_not_tell_to_install_python_dotenv_as_it_reads_env_itself(tmp_path):
    write_config(tmp_path)
    (tmp_path / ".env").write_text("# digest reads this file itself\n")
    with digest_server("serve", cwd=tmp_path) as running:
        pass
    assert f"Running on http://127.0.0.1:{running.port}" in running.stderr
    assert "dotenv" not in running.stdout + running.stderr
