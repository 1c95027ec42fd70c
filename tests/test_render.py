"""Rendering: inlined CSS, kept media queries, the text twin, escaping, filters and warnings."""

from __future__ import annotations

import html as html_lib
import re
import shutil
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digest.config import PROJECT_TEMPLATES, NewsletterConfig, SiteConfig, UtmSettings
from digest.edition.personalize import personalize, recipient_values
from digest.edition.render import (
    PREHEADER_MAX_CHARS,
    SUBJECT_MAX_CHARS,
    Renderer,
    add_utm,
    relative_time,
    size_warnings,
    wrap_text,
)
from digest.errors import TemplateError
from digest.models import Selection, Story, TopStory

from helpers import EDITION_TIME

NEWSLETTER = NewsletterConfig(name="daily", title="Test Daily")
SITE = SiteConfig(name="Test Courier", postal_address="1 Test Street, Testville")


def mk(id: int, hours_ago: float, **kw) -> Story:
    fields = {
        "url": f"https://news.test/{id}",
        "title": f"Story {id}",
        "published_at": EDITION_TIME - timedelta(hours=hours_ago),
        "summary": f"Summary {id}.",
        "author": "A. Reporter",
        "category": "world",
    } | kw
    return Story(id=id, **fields)


def selection(*top: Story, recent: tuple[Story, ...] = (), also: Story | None = None) -> Selection:
    tops = tuple(TopStory(s, 1.0, also if i == 0 else None) for i, s in enumerate(top))
    return Selection(top_stories=tops, recent_posts=recent)


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(PROJECT_TEMPLATES)


def render(renderer, sel=None, **kw):
    sel = sel or selection(mk(1, 3), recent=(mk(2, 4),), also=mk(3, 30))
    return renderer.render_edition(kw.pop("newsletter", NEWSLETTER), SITE, sel, EDITION_TIME, **kw)


def test_css_is_inlined_into_style_attributes(renderer):
    html = render(renderer).html
    assert re.search(r'<a [^>]*href="https://news.test/1\?digest_story=1"[^>]*style="[^"]+"', html)


def style_blocks(html: str) -> list[str]:
    return re.findall(r"<style[^>]*>(.*?)</style>", html, flags=re.S)


def test_media_queries_stay_in_a_style_block(renderer):
    inlined, dark = style_blocks(render(renderer).html)
    assert "@media only screen and (max-width: 620px)" in inlined
    assert inlined.lstrip().startswith("@media"), "premailer inlined everything else"
    assert "@media (prefers-color-scheme: dark)" in dark


def test_outlooks_dark_mode_hooks_survive_inlining(renderer):
    # They match nothing until Outlook marks the elements, so premailer would drop them.
    _, dark = style_blocks(render(renderer).html)
    assert "[data-ogsc] .story-title a" in dark and "[data-ogsb] .container" in dark
    assert "data-premailer" not in render(renderer).html


def test_every_dark_rule_beats_the_inlined_light_styles():
    css = (PROJECT_TEMPLATES / "email-dark.css").read_text()
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    declarations = re.findall(r"([a-z-]+\s*:[^;{}]+);", css.split("}", 1)[1])
    assert len(declarations) > 20
    assert all(d.endswith("!important") for d in declarations), declarations


def test_the_email_declares_both_colour_schemes(renderer):
    html = render(renderer).html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert '<meta name="supported-color-schemes" content="light dark">' in html


def test_links_are_not_rewritten(renderer):
    html = render(renderer).html
    assert 'href="https://news.test/1?digest_story=1"' in html
    assert 'href="https://news.test/3?digest_story=3"' in html  # the also-read link


def test_text_part_carries_the_stories_and_full_links(renderer):
    text = render(renderer).text
    for expected in ("Story 1", "https://news.test/1", "Story 2", "https://news.test/2", "Story 3"):
        assert expected in text
    assert "<" not in re.sub(r"<https?://[^>]+>", "", text), "no HTML tags in the text part"


def test_relative_times_count_from_the_edition_time_not_the_clock(renderer):
    rendered = render(renderer)
    assert "3 hours ago" in rendered.html and "4 hours ago" in rendered.html
    assert "3 hours ago" in rendered.text


def test_story_titles_are_escaped_in_html_and_literal_in_text(renderer):
    evil = mk(1, 1, title='<script>alert("x")</script> & more')
    rendered = render(renderer, selection(evil))
    assert "<script>alert" not in rendered.html
    assert "&lt;script&gt;alert" in rendered.html
    assert '<script>alert("x")</script> & more' in rendered.text


def test_subject_and_preheader_come_from_the_config_templates(renderer):
    newsletter = replace(
        NEWSLETTER,
        subject="{{ newsletter.title }} — {{ top_stories|length }} stories",
        preheader="First: {{ top_stories[0].title }}",
    )
    rendered = render(renderer, newsletter=newsletter)
    assert rendered.subject == "Test Daily — 1 stories"
    assert rendered.preheader == "First: Story 1"
    assert "First: Story 1" in rendered.html


def test_a_long_subject_and_preheader_are_cut_at_a_word_with_an_ellipsis(renderer):
    long_title = " ".join(["Ministers"] + ["agree"] * 60)
    tops = [mk(n, n, title=f"{long_title} {n}") for n in range(1, 6)]

    rendered = render(renderer, selection(*tops))

    assert len(rendered.subject) <= SUBJECT_MAX_CHARS
    assert rendered.subject.endswith(" agree…")
    assert rendered.subject.startswith("Test Daily: Ministers agree")
    assert len(rendered.preheader) <= PREHEADER_MAX_CHARS
    assert rendered.preheader.endswith("agree…")
    assert rendered.preheader in rendered.html


def test_a_subject_template_that_renders_several_lines_becomes_one(renderer):
    newsletter = replace(
        NEWSLETTER,
        subject="{% for s in top_stories %}{{ s.title }}\n{% endfor %}{{ '\x07' }}end",
    )

    rendered = render(renderer, selection(mk(1, 1), mk(2, 2)), newsletter=newsletter)

    assert rendered.subject == "Story 1 Story 2 end"


def test_footer_has_address_reason_and_a_visible_unsubscribe_link(renderer):
    rendered = render(renderer, topics=("world",))
    html = personalize(rendered.html, recipient_values("Ana", "https://news.test/u/TOKEN"))
    assert "1 Test Street, Testville" in html
    assert "Test Daily" in html and "world" in html
    assert re.search(r'<a [^>]*href="https://news.test/u/TOKEN"[^>]*>\s*Unsubscribe', html)
    text = personalize(rendered.text, recipient_values("Ana", "https://news.test/u/TOKEN"))
    assert "https://news.test/u/TOKEN" in text


@pytest.mark.parametrize(
    "address", ["1 Test Street, Testville", "Test Courier, 1 Test Street, Testville"]
)
def test_the_footer_names_the_publisher_once_with_its_address(renderer, address):
    site = replace(SITE, postal_address=address)
    rendered = renderer.render_edition(NEWSLETTER, site, selection(mk(1, 1)), EDITION_TIME)
    for part in (rendered.html, rendered.text):
        assert "Test Courier, 1 Test Street, Testville" in part
        assert "Test Courier, Test Courier" not in part


def test_the_confirmation_names_the_publisher_once_with_its_address(renderer):
    context = fixture_context() | {
        "site": replace(SITE, postal_address="Test Courier, 1 Test Street, Testville")
    }
    for name in ("confirm.html", "confirm.txt"):
        assert "Test Courier, Test Courier" not in renderer.render_template(name, context)


def test_reader_name_is_escaped_in_html_and_plain_in_text(renderer):
    rendered = render(renderer)
    values = recipient_values("<b>Bo</b> & Co", "https://news.test/u/T")
    assert "Hello &lt;b&gt;Bo&lt;/b&gt; &amp; Co," in personalize(rendered.html, values)
    assert "Hello <b>Bo</b> & Co," in personalize(rendered.text, values)


def test_utm_parameters_are_added_only_when_enabled(renderer):
    on = replace(NEWSLETTER, utm=UtmSettings(enabled=True))
    assert "utm_source" not in render(renderer).html
    html = render(renderer, newsletter=on).html
    assert (
        "https://news.test/1?utm_source=newsletter&amp;utm_medium=email&amp;utm_campaign=daily"
        in html
    )


def test_utm_keeps_existing_query_and_existing_utm_values():
    url = add_utm("https://x.test/a?id=7&utm_source=rss", UtmSettings(enabled=True), "daily")
    assert url == "https://x.test/a?id=7&utm_source=rss&utm_medium=email&utm_campaign=daily"


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(seconds=20), "just now"),
        (timedelta(minutes=1), "1 minute ago"),
        (timedelta(minutes=59), "59 minutes ago"),
        (timedelta(hours=4), "4 hours ago"),
        (timedelta(hours=23, minutes=59), "23 hours ago"),
        (timedelta(hours=30), "yesterday"),
        (timedelta(days=3), "3 days ago"),
    ],
)
def test_relative_time_wording(delta, expected):
    assert relative_time(EDITION_TIME - delta, EDITION_TIME) == expected


def test_premailer_runs_once_per_variant_not_per_recipient(renderer):
    # Personalizing is a string substitution over the inlined HTML: no template, no CSS.
    rendered = render(renderer)
    for name in ("Ana", "Bo"):
        html = personalize(rendered.html, recipient_values(name, f"https://n/u/{name}"))
        assert f"Hello {name}," in html and "%%" not in html


def test_warns_when_html_passes_gmails_clip():
    assert size_warnings("x" * 1000) == []
    [warning] = size_warnings("x" * (103 * 1024))
    assert "102 KB" in warning


def test_warns_when_the_style_block_passes_16_kb():
    [warning] = size_warnings("<style>" + "a{}" * 6000 + "</style>")
    assert "16 KB" in warning


def test_a_large_edition_reports_the_clip_warning(renderer):
    many = [mk(i, 1, summary="word " * 400) for i in range(1, 60)]
    rendered = render(renderer, selection(*many))
    assert any("102 KB" in w for w in rendered.warnings)


def copy_templates(tmp_path):
    target = tmp_path / "templates"
    shutil.copytree(PROJECT_TEMPLATES, target)
    return target


def test_a_template_syntax_error_names_the_file_and_line(tmp_path):
    folder = copy_templates(tmp_path)
    (folder / "_recent_post.html").write_text("<p>\n{% if %}\n</p>\n")
    with pytest.raises(TemplateError, match=r"_recent_post.html line 2"):
        render(Renderer(folder))


def test_an_undefined_variable_names_the_template(tmp_path):
    folder = copy_templates(tmp_path)
    (folder / "_top_story.txt").write_text("{{ story.no_such_field }}\n")
    with pytest.raises(TemplateError, match=r"_top_story.txt line 1.*no_such_field"):
        render(Renderer(folder))


def test_a_missing_dark_stylesheet_is_a_clear_error(tmp_path):
    folder = copy_templates(tmp_path)
    (folder / "email-dark.css").unlink()
    with pytest.raises(TemplateError, match=r"Cannot read .*email-dark.css.*restore it"):
        render(Renderer(folder))


def test_a_missing_template_folder_is_a_clear_error(tmp_path):
    with pytest.raises(TemplateError, match="does not exist"):
        Renderer(tmp_path / "nope")


def fixture_context() -> dict:
    """Every variable an email template may use, with realistic values."""
    from types import SimpleNamespace

    from digest.edition.render import StoryView

    related = StoryView("Related", "https://news.test/r", "Rel.", "", "world", "", EDITION_TIME)
    view = StoryView(
        "A title",
        "https://news.test/a",
        "A summary.",
        "A. Reporter",
        "world",
        "https://news.test/a.jpg",
        EDITION_TIME - timedelta(hours=2),
        related,
    )
    return {
        "newsletter": NEWSLETTER,
        "site": SITE,
        "edition_time": EDITION_TIME,
        "edition_date": "Thursday 26 November 2026",
        "subject": "Subject",
        "preheader": "Preheader",
        "top_stories": [view],
        "recent_posts": [view],
        "story": view,
        "topics": ["world"],
        "editor_note": "The bridge reopens tomorrow: our coverage starts at 6.",
        "reader": SimpleNamespace(greeting="Hello Ana,"),
        "unsubscribe_url": "https://news.test/u/T",
        "preferences_url": "https://news.test/u/T#preferences",
        "web_url": "https://news.test/archive/daily/2026-11-26/0700.utc.world/",
        "confirm_url": "https://news.test/confirm/T",
        "already_subscribed": False,
        "when": "every day at 07:00 in your time zone",
        "first_edition": "Friday 27 November at 07:00 (UTC)",
        "archive_url": "https://news.test/archive/daily/",
    }


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in PROJECT_TEMPLATES.iterdir() if p.suffix in (".html", ".txt")),
)
def test_every_email_template_renders_with_fixture_data(renderer, name):
    assert renderer.render_template(name, fixture_context()).strip()


def test_a_feed_cannot_spell_a_per_reader_placeholder(renderer):
    sneaky = mk(
        1,
        1,
        title="Win %%unsubscribe_url%%",
        url="https://evil.test/?t=%%unsubscribe_url%%",
        summary="%%greeting_html%%",
    )
    values = recipient_values("Ana", "https://news.test/u/SECRET")
    honest = personalize(render(renderer, selection(mk(2, 1))).html, values)
    rendered = render(renderer, selection(sneaky))
    html = personalize(rendered.html, values)
    assert html.count("SECRET") == honest.count("SECRET"), "only the footer's own links"
    assert "https://evil.test/?t=%25%25unsubscribe_url%25%25" in html
    assert "SECRET" not in personalize(rendered.subject, values)


def long_selection() -> Selection:
    """Long headlines, teasers, links and topics: everything the text part has to wrap."""
    words = "Harbour authority and council agree a decade-long plan for the quayside "
    long = {
        "title": (words * 2).strip(),
        "summary": (words * 5).strip(),
        "author": "Mira Okonkwo-Lind and Tomas Veller, with reporting by Priya Anand-Sole",
    }
    slug = "https://news.test/world/" + "a-very-long-slug-" * 8
    return selection(
        mk(1, 2, **long, url=slug + "1"),
        recent=(mk(2, 3, **long, url=slug + "2"),),
        also=mk(9, 30, **long, url=slug + "9"),
    )


def text_part(renderer, sel: Selection, **kw) -> str:
    newsletter = replace(NEWSLETTER, title="The Courier Morning Briefing, with a long title " * 2)
    rendered = render(renderer, sel, newsletter=newsletter, **kw)
    return personalize(rendered.text, recipient_values("Ana", "https://news.test/u/" + "T" * 90))


def test_text_part_lines_are_at_most_78_columns_except_urls(renderer):
    text = text_part(renderer, long_selection(), topics=tuple(f"topic{i}" for i in range(20)))
    long_lines = [line for line in text.splitlines() if len(line) > 78]
    assert long_lines, "the fixture has long URLs"
    assert all(re.fullmatch(r"\s*https?://\S+", line) for line in long_lines), long_lines


def test_text_part_wrapping_keeps_every_word_and_underlines_fit(renderer):
    text = text_part(renderer, long_selection())
    words = "Harbour authority and council agree a decade-long plan for the quayside"
    assert words in " ".join(text.split()), "wrapping only moves words between lines"
    rules = [line for line in text.splitlines() if set(line) in ({"-"}, {"="})]
    assert rules and all(len(rule) <= 78 for rule in rules)


def test_text_part_has_the_signature_separator_dash_dash_space(renderer):
    lines = render(renderer).text.splitlines()
    assert lines.count("-- ") == 1
    assert "--" not in lines
    footer = lines[lines.index("-- ") :]
    assert any("Unsubscribe" in line for line in footer)


def test_the_signature_separator_survives_the_mime_encoding(renderer, tmp_path):
    from email.headerregistry import Address

    from digest.delivery.message import new_message

    from helpers import make_config

    text = render(renderer).text
    message = new_message(
        make_config(tmp_path), Address("Ana", addr_spec="ana@example.com"), "S",
        EDITION_TIME, "t", {}, text, "<p>x</p>",
    )  # fmt: skip
    plain = message.get_body(("plain",)).get_content()
    assert "\n-- \n" in plain


def test_every_link_of_the_html_part_is_in_the_text_part(renderer):
    rendered = render(renderer, long_selection())
    values = recipient_values("Ana", "https://news.test/u/TOKEN")
    hrefs = {
        html_lib.unescape(href)
        for href in re.findall(r'href="([^"]+)"', personalize(rendered.html, values))
    }
    text = personalize(rendered.text, values)
    assert len(hrefs) >= 6, hrefs  # 3 stories, unsubscribe, preferences, site
    assert {href for href in hrefs if href not in text} == set()


def test_wrap_text_keeps_urls_whole_and_indents_continuations():
    url = "https://news.test/" + "x" * 90
    text = wrap_text("  " + "word " * 30 + url + " after\n- " + "item " * 30)
    lines = text.splitlines()
    assert "  " + url in lines, "a URL keeps a line of its own, whole"
    assert all(len(line) <= 78 for line in lines if url not in line)
    item = lines.index("- " + "item " * 14 + "item")
    assert all(line.startswith("  ") for line in lines[:item]), "indentation is kept"
    assert lines[item + 1 :] == ["  " + "item " * 14 + "item"], "hangs under the item's text"


@given(
    st.lists(
        st.one_of(
            st.text("abc -", max_size=12),
            st.just("\n"),
            st.just("- "),
            st.builds(lambda n: "https://x.test/" + "p" * n, st.integers(0, 120)),
        ),
        max_size=80,
    ).map(" ".join)
)
def test_wrap_text_only_moves_words_and_only_a_lone_word_runs_long(text):
    wrapped = wrap_text(text)
    assert wrapped.split() == text.split()
    assert all(len(line) <= 78 or " " not in line.strip() for line in wrapped.split("\n"))


def test_story_images_fill_the_content_column_and_only_repeat_the_headline(renderer):
    rendered = render(renderer, selection(mk(1, 1, image_url="https://news.test/1.jpg")))
    [img] = re.findall(r"<img [^>]*>", rendered.html)
    assert 'width="536"' in img and 'height="302"' in img, "600 less 2 x 32 padding, 16:9"
    assert 'alt=""' in img, "the headline next to it already says it"
    assert not re.search(r"<a [^>]*>\s*<img", rendered.html), "no second link to the story"
    css = (PROJECT_TEMPLATES / "email.css").read_text()
    assert re.search(r"\.content \{\s*padding: \d+px 32px \d+px 32px;", css)


def test_a_30_story_digest_stays_under_gmails_limits(renderer):
    # The heaviest case: every story a top story with a picture, an also-read and UTM links.
    def heavy(i: int) -> Story:
        return mk(
            i,
            i / 2,
            title=f"Port Halden council approves overnight tram service after a decade {i}",
            summary="Trams on the two busiest lines will run all night from March. " * 4,
            url=f"https://news.test/world/port-halden-council-approves-overnight-trams-{i}",
            image_url=f"https://news.test/images/2026/11/port-halden-trams-{i}.jpg",
            author="Mira Okonkwo-Lind",
        )

    newsletter = replace(NEWSLETTER, utm=UtmSettings(enabled=True))
    tops = tuple(TopStory(heavy(i), 1.0, heavy(100 + i)) for i in range(30))
    rendered = render(renderer, Selection(tops, ()), newsletter=newsletter)
    assert len(rendered.html.encode()) < 102 * 1024
    assert sum(len(b.encode()) for b in style_blocks(rendered.html)) < 16 * 1024
    assert rendered.warnings == []
