"""The studio's report in real Chromium after a real send whose signed events came back through
the webhook: five charts with marks and text alternatives, axe-core clean in light and dark.
"""

from __future__ import annotations

import json

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from digest.studio import create_studio

import test_events
from helpers import needs_chromium, served
from test_events import NOW, post_all, script_the_day, send
from test_report_charts import AS_OF, KEYS, write_report_file

pytestmark = [needs_chromium, pytest.mark.slow]

FIXTURES = ("config", "no_proxy", "readers", "sendgrid", "transport", "webhook")
globals().update({name: getattr(test_events, name) for name in FIXTURES})

MARKS = "g.role-mark:not(.role-axis):not(.role-legend) > path, g.role-mark > text"


@pytest.fixture
def studio(db, config, transport, sendgrid, webhook, readers):
    script_the_day(sendgrid)
    send(db, config, transport, now=NOW)
    post_all(db, sendgrid, order="shuffled")
    with served(create_studio(lambda: config, transport, now=AS_OF)) as url:
        yield url


def open_report(browser, studio: str, scheme: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    page.goto(f"{studio}/report?last=1")
    return context, page


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_report_shows_five_charts_with_marks_and_text_alternatives(browser, studio, scheme):
    context, page = open_report(browser, studio, scheme)
    try:
        figures = page.locator("figure.chart")
        assert figures.evaluate_all("fs => fs.map(f => f.dataset.chart)") == KEYS
        for key in KEYS:
            figure = page.locator(f"#chart-{key}")
            svg = figure.locator("svg[role=img]")
            assert svg.get_attribute("aria-label").strip(), key
            assert svg.locator("path, text").count() > 0
            marks = figure.locator("g.mark-rect path, g.mark-symbol path, g.mark-line path")
            drawn = marks.evaluate_all(
                "ps => ps.filter(p => { const b = p.getBBox(); return b.width + b.height > 0 })"
                ".length"
            )
            assert drawn > 0, f"{key} draws no marks"
            assert figure.locator("figcaption").inner_text().strip()
            figure.locator("details.chart-numbers summary").click()
            assert figure.locator("details.chart-numbers table tbody tr").count() > 0
    finally:
        context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_serious_or_critical_on_the_report(browser, studio, scheme):
    context, page = open_report(browser, studio, scheme)
    try:
        page.locator("details.chart-numbers summary").first.click()
        results = Axe().run(page)
        serious = [
            v for v in results.response["violations"] if v["impact"] in ("serious", "critical")
        ]
        assert serious == [], results.generate_report()
    finally:
        context.close()


def test_the_charts_follow_the_pages_colours_in_dark(browser, studio):
    colours = {}
    for scheme in ("light", "dark"):
        context, page = open_report(browser, studio, scheme)
        try:
            colours[scheme] = page.eval_on_selector(
                "#chart-funnel svg", "svg => getComputedStyle(svg).color"
            )
        finally:
            context.close()
    assert colours["light"] != colours["dark"]


def test_digest_report_html_opens_offline_with_its_charts(
    browser, studio, db, tmp_path, monkeypatch
):
    answer = write_report_file(tmp_path, monkeypatch, "--last", "--html", "report.html")
    assert answer.exit_code == 0, answer.output
    context = browser.new_context(offline=True)
    asked: list[str] = []
    context.on("request", lambda request: asked.append(request.url))
    try:
        page = context.new_page()
        page.goto((tmp_path / "report.html").as_uri())
        sizes = page.eval_on_selector_all(
            "figure.chart svg",
            "svgs => svgs.map(s => { const b = s.getBoundingClientRect(); "
            "return b.width * b.height })",
        )
        assert len(sizes) == 5 and all(size > 10_000 for size in sizes)
        assert [url for url in asked if not url.startswith("file:")] == []
    finally:
        context.close()


def test_the_click_map_labels_each_link_with_its_share_from_report_json(
    browser, studio, db, tmp_path, monkeypatch
):
    answer = write_report_file(tmp_path, monkeypatch, "--last", "--json")
    variant = json.loads(answer.output)["variants"][0]
    expected = {link["url"]: link["share"] for link in variant["links"] if link["url"]}
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{studio}/report?last=1")
        page.get_by_role("link", name="The email and its click map").first.click()
        frame = page.frame_locator("#email")
        expect(frame.locator("a[href]").first).to_be_visible()
        assert frame.locator(".studio-clickmap").count() == 0
        page.get_by_label("Click map").check()
        badges = frame.locator(".studio-clickmap")
        expect(badges.first).to_be_visible()
        shown = badges.evaluate_all(
            "bs => bs.map(b => [b.previousElementSibling.getAttribute('href'), b.textContent])"
        )
        # A link the email carries twice (the masthead and the footer) is labelled twice.
        assert {url for url, _ in shown} == set(expected)
        assert {url: text for url, text in shown} == {
            url: f"{share * 100:.1f}%" if share is not None else "n/a"
            for url, share in expected.items()
        }
        assert sorted(text for _, text in shown)[-2:] == ["50.0%", "50.0%"]
        page.get_by_label("Click map").uncheck()
        expect(badges).to_have_count(0)
    finally:
        context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
# The day's one edition is the fresh database's first.
@pytest.mark.parametrize("path", ["/report/email?edition_id=1", "/"])
def test_axe_finds_nothing_serious_on_the_click_map_and_the_day_strip(
    browser, studio, scheme, path
):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=scheme)
    try:
        page = context.new_page()
        page.goto(f"{studio}{path}")
        if "edition_id" in path:
            page.get_by_label("Click map").check()
            expect(page.frame_locator("#email").locator(".studio-clickmap").first).to_be_visible()
        else:
            expect(page.locator("#strip-title")).to_be_visible()
        results = Axe().run(page)
        serious = [
            v for v in results.response["violations"] if v["impact"] in ("serious", "critical")
        ]
        assert serious == [], results.generate_report()
    finally:
        context.close()
