"""A reader in real Chromium, JavaScript off: open the unsubscribe page, press the button, read."""

from __future__ import annotations

import pytest

from digest.readers.subscribers import add_subscriber, find_subscriber
from digest.readers.subscriptions import subscriptions_of
from digest.tokens import TokenSigner
from digest.web import create_app

from conftest import needs_chromium, served

pytestmark = needs_chromium


@pytest.fixture
def site(config):
    """The web app on a real port of 127.0.0.1, served from a thread."""
    with served(create_app(config)) as url:
        yield url


@pytest.fixture
def page(browser):
    context = browser.new_context(java_script_enabled=False)
    try:
        yield context.new_page()
    finally:
        context.close()


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
