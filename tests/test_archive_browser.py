"""The archive in real Chromium: the "View in your browser" link of a sent email, the sign-up
form on an archive page, the feed a browser discovers, and axe-core, light and dark."""

from __future__ import annotations

import email
import email.policy
import html
import urllib.request
from datetime import timedelta

import feedparser
import pytest
from axe_playwright_python.sync_playwright import Axe
from test_archive import NOW, READERS, send_day, view_link

from digest.readers.subscribers import add_subscriber, find_subscriber
from digest.web import create_app

from helpers import add_stories, needs_chromium, served, story

pytestmark = needs_chromium
SITE = "https://news.test"


@pytest.fixture
def site(db, config):
    """Two sent days and three readers; the app on a real port of 127.0.0.1."""
    add_stories(
        db,
        story(1, title="Tram runs all night", category="world", image_url="https://img.test/a.jpg"),
        story(2, title="Otters return <b>home</b>", category="science"),
        story(26, title="Harbour reopens", category="world"),
    )
    for address, name, topics, zone in READERS:
        add_subscriber(db, address, name, topics, zone)
    send_day(db, config, NOW - timedelta(days=1))
    send_day(db, config)
    with served(create_app(config)) as url:
        yield url


@pytest.fixture
def page(browser, site):
    """A page whose requests to the site's own address (https://news.test, where the emails and
    the archive's absolute links point) are answered by the app under test."""
    context = browser.new_context(java_script_enabled=False)

    def answer_locally(route):
        local = route.request.url.replace(SITE, site, 1)
        route.fulfill(response=route.fetch(url=local, max_redirects=0))

    context.route(f"{SITE}/**", answer_locally)
    try:
        yield context.new_page()
    finally:
        context.close()


def local(url: str, site: str) -> str:
    return url.replace(SITE, site, 1)


def test_the_view_in_browser_link_of_a_sent_email_opens_its_copy(site, config, page):
    path = config.outbox_dir / "daily-20261126T0700Z-science+sport-UTC"
    message = email.message_from_bytes(
        (path / "barnabus.oxtongue@example.org.eml").read_bytes(), policy=email.policy.default
    )
    link, _ = view_link(message)
    assert page.goto(link).status == 200
    emailed = message.get_body(("html",)).get_content()
    titles = page.locator(".story-title a").all_inner_texts()
    assert titles and all(html.escape(title) in emailed for title in titles)
    assert "Tram runs all night" not in titles, "a science and sport reader's own variant"
    text = page.locator("body").inner_text()
    assert "Barnabus" not in text and "barnabus" not in page.content()
    assert page.get_by_role("link", name="Subscribe to Test Daily").count() == 1


def test_a_visitor_signs_up_from_an_archive_page(site, db, page):
    page.goto(f"{SITE}/archive/daily/2026-11-26/")
    page.get_by_label("Email address").fill("visitor@example.com")
    page.get_by_role("button", name="Subscribe").click()
    assert "check your inbox" in page.locator("main").inner_text().lower()
    assert find_subscriber(db, "visitor@example.com").status == "pending"


def test_the_feed_a_browser_discovers_is_valid_atom(site, page):
    page.goto(f"{SITE}/archive/daily/")
    href = page.locator('link[rel="alternate"][type="application/atom+xml"]').get_attribute("href")
    with urllib.request.urlopen(local(href, site)) as answer:
        parsed = feedparser.parse(answer.read())
    assert not parsed.bozo
    assert [e.title for e in parsed.entries] == [
        "Test Daily: Tram runs all night",
        "Test Daily: Harbour reopens",
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize(
    "path",
    [
        "/archive/",
        "/archive/daily/",
        "/archive/daily/2026-11-26/",
        "/archive/daily/2026-11-26/0700.utc.science+sport/",
        "/archive/daily/2026-02-30/",
        "/subscribe",
    ],
)
def test_axe_finds_no_serious_or_critical_violation(site, browser, scheme, path):
    context = browser.new_context(color_scheme=scheme)
    try:
        page = context.new_page()
        page.goto(site + path)
        results = Axe().run(page)
    finally:
        context.close()
    serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == [], results.generate_report()


def test_archive_pages_turn_dark_with_the_reader(site, browser):
    context = browser.new_context(color_scheme="dark")
    try:
        page = context.new_page()
        page.goto(f"{site}/archive/daily/")
        colour = page.eval_on_selector("main", "el => getComputedStyle(el).backgroundColor")
    finally:
        context.close()
    assert colour == "rgb(28, 28, 30)"
