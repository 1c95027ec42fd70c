"""A reader in real Chromium, JavaScript off: open the unsubscribe page, press the button, read."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from digest.subscribers import add_subscriber, find_subscriber
from digest.subscriptions import subscriptions_of
from digest.tokens import TokenSigner
from digest.web import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)"
)


@pytest.fixture
def site(config):
    """The web app on a real port of 127.0.0.1, served from a thread."""
    server = make_server("127.0.0.1", 0, create_app(config), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(java_script_enabled=False)
        try:
            yield context.new_page()
        finally:
            browser.close()


def test_a_reader_unsubscribes_with_the_button_and_sees_it_done(db, config, site, page):
    ana = add_subscriber(db, "ana@example.com", "Ana")
    token = TokenSigner(config.secret_key).make(ana.id, "daily")

    page.goto(f"{site}/u/{token}")
    assert page.get_by_role("heading", level=1).inner_text() == "Test Daily"
    assert subscriptions_of(db, ana.id) == {"daily": "active"}, "opening the page changes nothing"
    page.get_by_role("button", name="Unsubscribe from Test Daily").click()

    assert page.get_by_role("heading", level=1).inner_text() == "You are unsubscribed"
    assert page.get_by_role("status").inner_text() == "ana@example.com will get no more Test Daily."
    assert subscriptions_of(db, ana.id) == {"daily": "unsubscribed"}
    assert find_subscriber(db, "ana@example.com").status == "unsubscribed"
