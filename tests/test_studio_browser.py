"""The studio in real Chromium: variants, views, live reload, the error overlay, test sends, checks.

The studio runs on an ephemeral port of 127.0.0.1 over a copy of the project's templates,
which the tests edit as an editor would; Chromium runs the studio's own script.
"""

from __future__ import annotations

import re
import shutil
from email import message_from_bytes, policy

import pytest
from playwright.sync_api import expect

from digest.config import PROJECT_TEMPLATES, with_overrides
from digest.delivery.transports.outbox import OutboxTransport
from digest.newsroom.stories import set_story_editorial
from digest.readers.subscribers import add_subscriber
from digest.studio import create_studio

from helpers import add_stories, needs_chromium, served, story

pytestmark = needs_chromium

NOW = "2026-11-26T06:00:00Z"
# Generous for a shared 2-core machine; the page itself polls every half second.
LIVE = 10_000


@pytest.fixture
def templates(tmp_path):
    folder = tmp_path / "templates"
    shutil.copytree(PROJECT_TEMPLATES, folder, ignore=shutil.ignore_patterns("pages"))
    return folder


@pytest.fixture
def newsroom(config, db, templates):
    config = with_overrides(config, templates_dir=templates)
    ids = add_stories(
        db,
        story(8, title="Tram runs all night"),
        story(9, category="science", title="Otters return"),
        story(10, category="sport", title="Harbour regatta moved to May"),
    )
    add_subscriber(db, "ana@example.com", "Ana")
    add_subscriber(db, "raj@example.com", "Raj", ["science"], "Asia/Kolkata")
    add_subscriber(db, "rui@example.com", "Rui", ["science"], "Asia/Kolkata")
    return config, ids


@pytest.fixture
def studio(newsroom):
    config, _ = newsroom
    with served(create_studio(lambda: config, OutboxTransport(config))) as url:
        yield url


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        yield context.new_page()
    finally:
        context.close()


def open_reader(page, studio: str, email: str = "ana@example.com") -> None:
    page.goto(f"{studio}/?as={email}&now={NOW}")
    page.frame_locator("#email").locator("table.container").wait_for()


def test_the_front_page_shows_each_variant_with_its_readers(page, studio):
    page.goto(f"{studio}/?now={NOW}")
    expect(page.locator(".summary-line")).to_contain_text("2 variants checked: 0 errors")
    expect(page.locator(".summary-line")).to_contain_text("across 3 readers")
    rows = page.locator("tr.variant")
    expect(rows).to_have_count(2)
    kolkata = page.locator('tr.variant[data-timezone="Asia/Kolkata"]')
    expect(kolkata.locator(".readers")).to_have_text("2")
    expect(kolkata.locator(".subject")).to_have_text("Test Daily: Otters return")
    expect(page.locator('tr.variant[data-timezone="UTC"] .stories')).to_have_text("3")


def test_the_mobile_width_has_no_horizontal_scroll(page, studio):
    open_reader(page, studio)
    page.get_by_role("button", name="Mobile 375").click()
    frame = page.locator("#email")
    expect(frame).to_have_attribute("title", "The email")
    page.wait_for_function("document.getElementById('email').clientWidth === 375")
    inside = frame.element_handle().content_frame()
    widths = inside.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1] == 375
    page.get_by_role("button", name="Desktop 600+").click()
    page.wait_for_function("document.getElementById('email').clientWidth >= 600")


def test_the_text_tab_shows_the_plain_text_part(page, studio):
    open_reader(page, studio)
    page.get_by_role("button", name="Plain text").click()
    text = page.locator("#text")
    expect(text).to_be_visible()
    expect(text).to_contain_text("Hello Ana,")
    expect(text).to_contain_text("https://news.test/u/preview")
    expect(page.locator("#email")).to_be_hidden()


def test_a_template_edit_shows_up_without_a_reload(page, studio, templates):
    open_reader(page, studio)
    page.get_by_role("button", name="Mobile 375").click()
    footer = templates / "_footer.html"
    footer.write_text(footer.read_text() + '<p class="desk-note">Edited by the desk</p>\n')
    note = page.frame_locator("#email").locator(".desk-note")
    expect(note).to_have_text("Edited by the desk", timeout=LIVE)
    # The view the editor chose survives the refresh.
    expect(page.get_by_role("button", name="Mobile 375")).to_have_attribute("aria-pressed", "true")


def test_a_pin_shows_up_without_a_reload(page, studio, newsroom, db):
    _, ids = newsroom
    open_reader(page, studio)
    regatta = page.locator(f'.lineup tr[data-story="{ids[2]}"]')
    expect(regatta.locator(".place")).not_to_have_text("top 1")
    set_story_editorial(db, str(ids[2]), pinned=True)  # as `digest stories pin` would
    expect(regatta.locator(".place")).to_have_text("top 1", timeout=LIVE)
    first = page.frame_locator("#email").locator(".story-title").first
    expect(first).to_have_text("Harbour regatta moved to May", timeout=LIVE)


def test_the_pin_button_pins_from_the_lineup(page, studio, newsroom):
    _, ids = newsroom
    open_reader(page, studio)
    row = page.locator(f'.lineup tr[data-story="{ids[1]}"]')
    row.get_by_role("button", name="Pin").click()
    expect(row.locator(".place")).to_have_text("top 1", timeout=LIVE)
    expect(row.get_by_role("button", name="Unpin")).to_be_visible()


def test_a_template_error_shows_file_and_line_then_recovers(page, studio, templates):
    open_reader(page, studio)
    story_template = templates / "_top_story.html"
    good = story_template.read_text()
    story_template.write_text("{% if story.category %}\n{{ story.title }\n")
    overlay = page.get_by_role("alert")
    expect(overlay).to_contain_text("_top_story.html", timeout=LIVE)
    expect(overlay.locator(".line")).to_have_text("2")
    expect(overlay.locator(".error-message")).to_contain_text("Fix that line")
    story_template.write_text(good)
    expect(overlay).to_be_hidden(timeout=LIVE)
    expect(page.frame_locator("#email").locator(".story-title").first).to_be_visible()


def test_a_test_send_lands_in_the_outbox_with_test_in_the_subject(page, studio, newsroom):
    config, _ = newsroom
    open_reader(page, studio)
    page.get_by_label("To", exact=True).fill("editor@example.com")
    page.get_by_role("button", name="Send test").click()
    status = page.get_by_role("status").filter(has_text="Test to")
    expect(status).to_contain_text("editor@example.com")
    [path] = config.outbox_dir.rglob("editor@example.com.eml")
    # It says where the test went: the outbox only writes a file.
    expect(status).to_contain_text(
        f"Test to editor@example.com with a [TEST] subject: written to {path} (the outbox "
        "transport: nothing left this machine)."
    )
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["Subject"].startswith("[TEST] Test Daily: ")
    html = message.get_body(("html",)).get_content()
    assert set(re.findall(r"https://news\.test/u/[^\"#\s]+", html)) == {
        "https://news.test/u/preview"
    }


def test_the_checks_flag_a_bad_link_and_a_missing_alt(page, studio, db, templates):
    story_template = templates / "_top_story.html"
    story_template.write_text(re.sub(r' alt="[^"]*"', "", story_template.read_text()))
    add_stories(
        db,
        story(
            1,
            url="http://news.test/plain-http",
            title="A story on plain http",
            image_url="https://news.test/photo.jpg",
        ),
    )
    open_reader(page, studio)
    links = page.locator('.finding.error[data-check="links"]')
    expect(links).to_contain_text("http://news.test/plain-http")
    images = page.locator('.finding.error[data-check="images"]')
    expect(images).to_contain_text("has no alt")


def dark_colour(templates, selector: str) -> str:
    """The background colour `email-dark.css` gives `selector` under prefers-color-scheme: dark."""
    css = (templates / "email-dark.css").read_text()
    block = css[css.index("@media (prefers-color-scheme: dark)") :]
    hex_colour = re.search(rf"{re.escape(selector)}[^{{]*\{{ background-color: #(\w{{6}})", block)[
        1
    ]
    red, green, blue = (int(hex_colour[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgb({red}, {green}, {blue})"


BACKGROUNDS = """[document.body, document.querySelector('table.container')]
    .map(element => getComputedStyle(element).backgroundColor)"""


def test_images_off_and_dark_mode_change_only_the_view(page, studio, db, templates):
    add_stories(db, story(1, title="Photo story", image_url="https://news.test/photo.jpg"))
    open_reader(page, studio)
    image = page.frame_locator("#email").locator("img.story-image").first
    expect(image).to_have_attribute("src", "https://news.test/photo.jpg")
    page.get_by_label("Images off").check()
    expect(image).not_to_have_attribute("src", re.compile(".*"))
    # The story image only repeats its headline: decorative, so images off leave no alt text.
    expect(image).to_have_attribute("alt", "")
    page.get_by_label("Images off").uncheck()
    expect(image).to_have_attribute("src", "https://news.test/photo.jpg")
    email = page.locator("#email").element_handle().content_frame()
    light = email.evaluate(BACKGROUNDS)
    # The email's own dark palette, as a reader whose client prefers dark sees it.
    page.get_by_label("Dark mode").check()
    dark = [dark_colour(templates, "body"), dark_colour(templates, ".container")]
    assert dark != light
    assert email.evaluate(BACKGROUNDS) == dark
    page.get_by_label("Dark mode").uncheck()
    assert email.evaluate(BACKGROUNDS) == light


def test_dark_mode_says_so_when_the_email_has_no_dark_palette(page, studio, templates):
    (templates / "email-dark.css").write_text(":root { color-scheme: light; }\n")
    open_reader(page, studio)
    email = page.locator("#email").element_handle().content_frame()
    light = email.evaluate(BACKGROUNDS)
    page.get_by_label("Dark mode").check()
    expect(page.locator("#dark-note")).to_contain_text("This email has no prefers-color-scheme")
    assert email.evaluate(BACKGROUNDS) == light
    page.get_by_label("Dark mode").uncheck()
    expect(page.locator("#dark-note")).to_have_text("")


def test_a_dark_block_for_phones_only_darkens_the_mobile_view(page, studio, templates):
    (templates / "email-dark.css").write_text(
        "@media (prefers-color-scheme: dark) and (max-width: 480px) {\n"
        "  .container { background-color: #202122 !important; }\n}\n"
    )
    open_reader(page, studio)
    email = page.locator("#email").element_handle().content_frame()
    card = "getComputedStyle(document.querySelector('table.container')).backgroundColor"
    light = email.evaluate(card)
    page.get_by_label("Dark mode").check()
    assert email.evaluate(card) == light
    page.get_by_role("button", name="Mobile 375").click()
    email.wait_for_function(f"{card} === 'rgb(32, 33, 34)'")


def zone(page, timezone: str):
    return page.locator(f'section.zone[data-timezone="{timezone}"]')


def test_hold_and_release_from_the_desk(page, studio):
    page.goto(f"{studio}/?now={NOW}")
    utc = zone(page, "UTC")
    expect(utc.locator(".state")).to_have_text("would send")
    expect(utc.locator(".countdown")).to_have_text("in 1 h 0 m")
    # The variants are folded beneath their zone until opened.
    expect(utc.locator("tr.variant")).to_be_hidden()
    utc.locator("summary").click()
    expect(utc.locator("tr.variant")).to_be_visible()
    utc.get_by_role("button", name="Hold UTC").click()
    expect(utc.locator(".state")).to_have_text("held", timeout=LIVE)
    expect(utc.locator(".cause")).to_contain_text("daily in UTC held by")
    expect(page.locator(".attention")).to_contain_text("held by hand: daily in UTC held by")
    expect(zone(page, "Asia/Kolkata").locator(".state")).to_have_text("would send")
    utc.get_by_role("button", name="Release").click()
    expect(utc.locator(".state")).to_have_text("would send", timeout=LIVE)
    expect(page.locator(".attention")).to_have_count(0)


def test_a_bad_hold_says_why_on_the_page(page, studio):
    page.goto(f"{studio}/?now={NOW}")
    page.get_by_label("until").fill("next tuesday")
    page.get_by_role("button", name="Hold every zone").click()
    expect(page.get_by_role("alert")).to_contain_text("Not done: ")
    expect(page.get_by_role("alert")).to_contain_text("next tuesday")
    expect(zone(page, "UTC").locator(".state")).to_have_text("would send")


def test_the_editions_subject_note_and_a_dropped_story_from_the_studio(page, studio, newsroom):
    _, ids = newsroom
    open_reader(page, studio)
    page.get_by_label("Subject", exact=True).fill("Night trams, and otters")
    page.get_by_role("button", name="Save subject").click()
    expect(page.locator(".inbox-row .subject")).to_have_text("Night trams, and otters")
    page.get_by_label("Editor's note").fill("Our bridge coverage starts at 6.")
    page.get_by_role("button", name="Save editor's note").click()
    email = page.frame_locator("#email")
    expect(email.locator(".editor-note")).to_have_text("Our bridge coverage starts at 6.")
    tram = page.locator(f'.lineup tr[data-story="{ids[0]}"]')
    tram.get_by_role("button", name="Drop from this edition").click()
    expect(tram.locator(".place")).to_have_text(re.compile("^dropped"))
    expect(tram.locator(".marks")).to_contain_text("dropped")
    expect(email.locator(".story-title").first).not_to_have_text("Tram runs all night")
    page.locator(".trail summary").click()
    expect(page.locator(".trail li")).to_have_count(3)
    expect(page.locator(".trail li").last).to_contain_text(f"dropped story {ids[0]}")
    tram.get_by_role("button", name="Restore").click()
    expect(tram.locator(".place")).not_to_have_text(re.compile("^dropped"))


def test_a_bad_edit_or_score_says_why_on_the_page(page, studio, newsroom):
    _, ids = newsroom
    open_reader(page, studio)
    page.get_by_label("Subject", exact=True).fill("x" * 200)
    page.get_by_role("button", name="Save subject").click()
    expect(page.get_by_role("alert")).to_contain_text("The subject is 200 characters")
    row = page.locator(f'.lineup tr[data-story="{ids[1]}"]')
    row.get_by_label("Score").fill("nan")
    row.get_by_role("button", name="Set").click()
    expect(page.get_by_role("alert")).to_contain_text("Score nan is not a number")
    row = page.locator(f'.lineup tr[data-story="{ids[1]}"]')
    row.get_by_label("Score").fill("-5")
    row.get_by_role("button", name="Set").click()
    expect(page.get_by_role("alert")).to_contain_text("Score -5 is below 0")
