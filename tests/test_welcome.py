"""The welcome email after a confirmation, and the confirmation email's dark palette."""

from __future__ import annotations

import email
import email.policy
import re

import pytest

from digest.config import PROJECT_TEMPLATES
from digest.web import create_app

from helpers import needs_chromium


@pytest.fixture
def client(config):
    return create_app(config).test_client(use_cookies=False)


def sent_message(config, kind: str, address: str):
    path = config.outbox_dir / kind / f"{address}.eml"
    if not path.exists():
        return None
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def sign_up_and_confirm(client, config, address="new@example.com", **form):
    client.post("/subscribe", data={"email": address, **form}, buffered=True)
    text = sent_message(config, "confirmations", address).get_body(("plain",)).get_content()
    path = re.search(r"https://news\.test(/confirm/\S+)", text).group(1)
    return client.post(path, buffered=True)


def test_a_confirmed_reader_is_welcomed_with_their_first_edition_and_the_archive(client, config):
    assert (
        sign_up_and_confirm(client, config, name="Nell", timezone="Asia/Tokyo").status_code == 200
    )
    welcome = sent_message(config, "welcomes", "new@example.com")
    assert welcome["Subject"] == "Welcome to Test Daily"
    text = welcome.get_body(("plain",)).get_content()
    assert "Hello Nell," in text
    assert "It arrives every day at 07:00 in your time zone." in text
    due = " ".join(text.split())
    assert re.search(r"first edition is due \w+day \d+ \w+ at 07:00 \(Asia/Tokyo\)\.", due)
    assert "https://news.test/archive/daily/" in text
    assert "https://news.test/u/" in text, "their own link to change or leave"


def test_confirming_again_sends_no_second_welcome(client, config):
    sign_up_and_confirm(client, config)
    path = config.outbox_dir / "welcomes" / "new@example.com.eml"
    path.unlink()
    text = sent_message(config, "confirmations", "new@example.com").get_body(("plain",))
    confirm = re.search(r"https://news\.test(/confirm/\S+)", text.get_content()).group(1)
    client.post(confirm, buffered=True)
    assert not path.exists()


@pytest.mark.parametrize("name", ["confirm.html", "welcome.html"])
def test_the_single_emails_have_the_dark_palette(name):
    source = (PROJECT_TEMPLATES / name).read_text()
    layout = (PROJECT_TEMPLATES / "_note.html").read_text()
    assert source.startswith('{% extends "_note.html" %}')
    assert '<meta name="color-scheme" content="light dark">' in layout
    assert "@media (prefers-color-scheme: dark)" in layout
    assert "[data-ogsc]" in layout


@needs_chromium
@pytest.mark.parametrize("name", ["confirmations", "welcomes"])
def test_the_single_emails_turn_dark_and_pass_axe_in_chromium(client, config, browser, name):
    from axe_playwright_python.sync_playwright import Axe

    sign_up_and_confirm(client, config)
    message = sent_message(config, name, "new@example.com")
    page_html = message.get_body(("html",)).get_content()
    for scheme, card in (("light", "rgb(255, 255, 255)"), ("dark", "rgb(28, 28, 30)")):
        context = browser.new_context(color_scheme=scheme, java_script_enabled=True)
        try:
            page = context.new_page()
            page.set_content(page_html)
            colour = page.eval_on_selector(
                ".note-card", "el => getComputedStyle(el).backgroundColor"
            )
            assert colour == card, scheme
            results = Axe().run(page)
        finally:
            context.close()
        serious = [
            v for v in results.response["violations"] if v["impact"] in ("serious", "critical")
        ]
        assert serious == [], results.generate_report()
