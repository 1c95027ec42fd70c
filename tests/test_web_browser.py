"""A reader in real Chromium, JavaScript off: open the unsubscribe page, press the button, read."""

from __future__ import annotations

import email
import email.policy
import re
import time

import pytest

from digest.readers.subscribers import add_subscriber, find_subscriber
from digest.readers.subscriptions import subscriptions_of
from digest.tokens import TokenSigner
from digest.web import create_app

from helpers import needs_chromium, served

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
    token = TokenSigner(config.secret_key).make(ana.id, ana.link_nonce, "daily")

    page.goto(f"{site}/u/{token}")
    assert page.get_by_role("heading", level=1).inner_text() == "Test Daily"
    assert subscriptions_of(db, ana.id) == {"daily": "active"}, "opening the page changes nothing"
    page.get_by_role("button", name="Unsubscribe from Test Daily").click()

    assert page.get_by_role("heading", level=1).inner_text() == "You are unsubscribed"
    assert page.get_by_role("status").inner_text() == "ana@example.com will get no more Test Daily."
    assert subscriptions_of(db, ana.id) == {"daily": "unsubscribed"}
    assert find_subscriber(db, "ana@example.com").status == "unsubscribed"


def wait_for(path, seconds: float = 10):
    """The confirmation is emailed once the answer has gone: wait for its file to appear."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path


def test_a_reader_signs_up_opens_the_emailed_link_and_confirms_with_the_button(
    db, config, site, page
):
    page.goto(f"{site}/subscribe")
    page.get_by_label("Email").fill("nia@example.com")
    page.get_by_role("button", name="Subscribe").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Check your inbox"

    eml = wait_for(config.outbox_dir / "confirmations" / "nia@example.com.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    link = re.search(
        r"https://news\.test(/confirm/\S+)", message.get_body(("plain",)).get_content()
    )
    page.goto(site + link.group(1))
    assert subscriptions_of(db, find_subscriber(db, "nia@example.com").id) == {
        "daily": "pending"
    }, "opening the link changes nothing"
    page.get_by_role("button", name="Confirm my subscription").click()

    assert page.get_by_role("heading", level=1).inner_text() == "You are subscribed"
    assert find_subscriber(db, "nia@example.com").status == "active"
