"""The digest a reader opens, in real Chromium: phone and desktop, images on and off, light and
dark, read by axe-core and measured as an email developer would."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe

from digest.config import PROJECT_TEMPLATES, NewsletterConfig, SiteConfig
from digest.edition.personalize import personalize, recipient_values
from digest.edition.render import Renderer
from digest.models import Selection, Story, TopStory
from digest.preview import write_preview
from digest.readers.subscribers import add_subscriber

from helpers import EDITION_TIME, add_stories, needs_chromium, story

pytestmark = needs_chromium

DESKTOP, PHONE = 1024, 375
SITE = SiteConfig(
    name="Test Courier",
    url="https://news.test",
    postal_address="Test Courier, 1 Test Street, Testville",  # as the shipped digest.toml has it
)
# A picture far wider than the column, as feeds often send: the layout must hold it.
WIDE_PICTURE = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="2000" height="1125">'
    b'<rect width="2000" height="1125" fill="#4a6d8c"/></svg>'
)


def mk(id: int, hours_ago: float, **fields) -> Story:
    return Story(
        **{
            "id": id,
            "url": f"https://news.test/story-{id}",
            "title": f"Council approves overnight tram service, story {id}",
            "published_at": EDITION_TIME - timedelta(hours=hours_ago),
            "summary": "Trams on the two busiest lines will run all night from March.",
            "author": "Mira Okonkwo-Lind",
            "category": "world",
            "image_url": f"https://images.test/story-{id}.jpg",
        }
        | fields
    )


@pytest.fixture(scope="module")
def email_url(tmp_path_factory) -> str:
    """One reader's digest as a file: pictures, an also-read, recent posts, the footer."""
    selection = Selection(
        top_stories=(
            TopStory(mk(1, 1), 2.0, also_read=mk(9, 30, image_url="")),
            TopStory(mk(2, 2, image_url=""), 1.0),
        ),
        recent_posts=(mk(3, 3, image_url=""), mk(4, 4, image_url="", category="")),
    )
    rendered = Renderer(PROJECT_TEMPLATES).render_edition(
        NewsletterConfig(name="daily", title="Test Daily"),
        SITE,
        selection,
        EDITION_TIME,
        ("world",),
    )
    path = tmp_path_factory.mktemp("email") / "digest.html"
    values = recipient_values("Ana", "https://news.test/u/TOKEN")
    path.write_text(personalize(rendered.html, values), encoding="utf-8")
    return path.as_uri()


@pytest.fixture
def open_email(browser, email_url):
    """Open the email at a width, colour scheme and with images on or off."""
    pages = []

    def open_(width: int = DESKTOP, scheme: str = "light", images: bool = True):
        page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
        pages.append(page)
        if images:
            page.route(
                "http*://**/*", lambda r: r.fulfill(body=WIDE_PICTURE, content_type="image/svg+xml")
            )
        else:
            page.route("http*://**/*", lambda r: r.abort())
        page.goto(email_url, wait_until="load")
        return page

    yield open_
    for page in pages:
        page.close()


def box(page, selector: str) -> dict:
    return page.eval_on_selector(selector, "el => el.getBoundingClientRect().toJSON()")


# --- Layout -----------------------------------------------------------------------------------


@pytest.mark.parametrize("images", [True, False], ids=["images-on", "images-off"])
@pytest.mark.parametrize(("width", "card"), [(DESKTOP, 600), (620 + 1, 600), (PHONE, PHONE)])
def test_the_card_keeps_its_width(open_email, width, card, images):
    page = open_email(width, images=images)
    assert box(page, "table.container")["width"] == card
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "no sideways scroll"


def test_a_story_image_fills_the_content_column_exactly(open_email):
    page = open_email(DESKTOP)
    image, column = box(page, "img.story-image"), box(page, "td.content")
    padding = page.eval_on_selector(
        "td.content", "el => parseFloat(getComputedStyle(el).paddingLeft) * 2"
    )
    assert image["width"] == column["width"] - padding
    assert image["height"] == pytest.approx(image["width"] * 1125 / 2000, abs=1), "its own shape"


def test_the_card_stays_600_px_where_max_width_is_ignored(open_email):
    # Outlook for Windows ignores max-width: the images' own width must fit the column.
    page = open_email(DESKTOP)
    page.evaluate(
        "document.querySelectorAll('[style]').forEach(el => el.style.removeProperty('max-width'))"
    )
    assert box(page, "table.container")["width"] == 600


# --- Colours ----------------------------------------------------------------------------------

# Every element with text of its own: its colour and the background it is drawn on.
TEXT_COLOURS = """() => [...document.querySelectorAll('body *')]
  .filter(el => [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()))
  .filter(el => el.getClientRects().length && getComputedStyle(el).opacity !== '0')
  .map(el => {
    let bg = el;
    while (bg && ['rgba(0, 0, 0, 0)', 'transparent'].includes(getComputedStyle(bg).backgroundColor))
      bg = bg.parentElement;
    return {
      text: el.textContent.trim().slice(0, 40),
      color: getComputedStyle(el).color,
      background: bg ? getComputedStyle(bg).backgroundColor : 'rgb(255, 255, 255)',
    };
  })"""


def rgb(css: str) -> tuple[int, int, int]:
    assert css.startswith("rgb("), f"opaque colours only: {css}"
    r, g, b = (int(part) for part in css[4:-1].split(","))
    return r, g, b


def contrast(one: str, other: str) -> float:
    """WCAG 2 contrast ratio of two CSS colours."""

    def luminance(colour: str) -> float:
        channels = [c / 255 for c in rgb(colour)]
        r, g, b = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(one), luminance(other)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def outlook_forced_dark(page) -> None:
    """What Outlook.com and Outlook's apps do in dark mode: mark what they recolour."""
    page.evaluate(
        "document.body.setAttribute('data-ogsc', ''), document.body.setAttribute('data-ogsb', '')"
    )


@pytest.mark.parametrize("mode", ["light", "dark", "outlook-dark"])
def test_every_text_keeps_a_contrast_of_4_5(open_email, mode):
    page = open_email(scheme="dark" if mode == "dark" else "light")
    if mode == "outlook-dark":
        outlook_forced_dark(page)
    texts = page.evaluate(TEXT_COLOURS)
    assert len(texts) > 25
    low = [t for t in texts if contrast(t["color"], t["background"]) < 4.5]
    assert low == []


@pytest.mark.parametrize("mode", ["dark", "outlook-dark"])
def test_dark_mode_changes_every_background_and_text_colour(open_email, mode):
    light = open_email().evaluate(TEXT_COLOURS)
    page = open_email(scheme="dark" if mode == "dark" else "light")
    if mode == "outlook-dark":
        outlook_forced_dark(page)
    dark = page.evaluate(TEXT_COLOURS)
    assert [t["text"] for t in dark] == [t["text"] for t in light]
    pairs = list(zip(light, dark, strict=True))
    assert [d for lt, d in pairs if d["color"] == lt["color"]] == []
    assert [d for lt, d in pairs if d["background"] == lt["background"]] == []
    for selector in ("table.wrapper", "table.container", "td.footer"):
        colour = page.eval_on_selector(selector, "el => getComputedStyle(el).backgroundColor")
        assert max(rgb(colour)) < 48, f"{selector} is dark, not {colour}"


# --- Accessibility ----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("images", [True, False], ids=["images-on", "images-off"])
def test_axe_finds_no_serious_or_critical_violation(open_email, scheme, images):
    page = open_email(PHONE, scheme=scheme, images=images)
    results = Axe().run(page)
    assert results.response["testEngine"]["version"].startswith("4.")
    serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == [], results.generate_report()


def test_headings_go_down_one_level_at_a_time(open_email):
    page = open_email()
    headings = page.eval_on_selector_all(
        "h1, h2, h3, h4, h5, h6", "els => els.map(h => [+h.tagName[1], h.textContent.trim()])"
    )
    levels = [level for level, _ in headings]
    assert levels[0] == 1 and levels.count(1) == 1
    assert all(b <= a + 1 for a, b in pairwise(levels)), headings
    assert [text for level, text in headings if level == 2] == ["Top stories", "Recent posts"]
    assert {level for level, text in headings if text.startswith("Council")} == {3}


def test_a_story_with_a_picture_is_one_link_read_once(open_email):
    for images in (True, False):
        page = open_email(images=images)
        headline = "Council approves overnight tram service, story 1"
        assert page.get_by_role("link", name=headline).count() == 1
        assert page.get_by_role("img").count() == 0, "the picture repeats the headline: alt=''"
        assert page.locator("body").inner_text().count(headline) == 1


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_every_link_is_a_target_of_at_least_24_px(open_email, width):
    page = open_email(width)
    links = page.eval_on_selector_all(
        "a[href]",
        "els => els.map(a => [a.textContent.trim(), a.getBoundingClientRect().toJSON()])",
    )
    assert len(links) >= 8
    small = [
        (text, r["width"], r["height"]) for text, r in links if min(r["width"], r["height"]) < 24
    ]
    assert small == []


def test_the_footer_shows_the_postal_address_once(open_email):
    footer = open_email().inner_text("td.footer")
    assert footer.count("1 Test Street, Testville") == 1
    assert footer.count("Test Courier, 1 Test Street") == 1
    assert "Test Courier, Test Courier" not in footer


# --- Through the pipeline ---------------------------------------------------------------------


def test_the_preview_of_a_reader_shows_their_name_and_unsubscribe_link(
    browser, db, config, tmp_path
):
    add_stories(db, story(2, title="Tram runs all night"), story(3, category="science"))
    add_subscriber(db, "ana@example.com", "Ana")
    preview = write_preview(db, config, None, EDITION_TIME, tmp_path / "preview", "ana@example.com")
    page = browser.new_page(viewport={"width": DESKTOP, "height": 900})
    try:
        page.goto(preview.html_path.as_uri())
        link = page.get_by_role("link", name="Unsubscribe")
        assert link.is_visible()
        assert link.get_attribute("href").startswith("https://news.test/u/")
        assert page.get_by_text("Hello Ana,").is_visible()
    finally:
        page.close()


@pytest.mark.slow
def test_the_screenshot_script_writes_every_picture_the_docs_show(tmp_path):
    repo = Path(__file__).resolve().parent.parent
    subprocess.run(
        [sys.executable, str(repo / "scripts" / "screenshots.py"), str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    written = sorted(p.name for p in tmp_path.glob("*.png"))
    rendering = (repo / "docs" / "how-it-works" / "rendering.md").read_text()
    shown = sorted(re.findall(r"\.\./screenshots/([\w-]+\.png)", rendering))
    assert written == shown and len(written) == 8
    assert sorted(p.name for p in (repo / "docs" / "screenshots").glob("*.png")) == written
    for name in written:
        width = struct.unpack(">I", (tmp_path / name).read_bytes()[16:20])[0]
        assert width == int(name.split("-")[0])
