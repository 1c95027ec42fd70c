"""The rendered digest in real Chromium: 600 px on a desktop, full width on a phone."""

from __future__ import annotations

import pytest

from digest.preview import write_preview
from digest.readers.subscribers import add_subscriber

from conftest import EDITION_TIME, add_stories, needs_chromium, story

pytestmark = needs_chromium


@pytest.fixture
def preview_page(db, config, tmp_path):
    add_stories(db, story(2, title="Tram runs all night"), story(3, category="science"))
    add_subscriber(db, "ana@example.com", "Ana")
    preview = write_preview(db, config, None, EDITION_TIME, tmp_path / "preview", "ana@example.com")
    return preview.html_path.as_uri()


def container_width(browser, url: str, viewport_width: int) -> float:
    page = browser.new_page(viewport={"width": viewport_width, "height": 900})
    try:
        page.goto(url)
        return page.eval_on_selector("table.container", "el => el.getBoundingClientRect().width")
    finally:
        page.close()


def test_the_digest_is_a_600_px_column_on_a_desktop(browser, preview_page):
    assert container_width(browser, preview_page, 1024) == 600


def test_the_media_query_still_wins_over_inlined_styles_on_a_phone(browser, preview_page):
    assert container_width(browser, preview_page, 375) == 375


def test_the_unsubscribe_link_is_visible_to_a_reader(browser, preview_page):
    page = browser.new_page(viewport={"width": 1024, "height": 900})
    try:
        page.goto(preview_page)
        link = page.get_by_role("link", name="Unsubscribe")
        assert link.is_visible()
        assert link.get_attribute("href").startswith("https://news.test/u/")
        assert page.get_by_text("Hello Ana,").is_visible()
    finally:
        page.close()
