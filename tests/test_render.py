"""Rendering: inlined CSS, kept media queries, the text twin, escaping, filters and warnings."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from datetime import timedelta

import pytest

from digest.config import PROJECT_TEMPLATES, NewsletterConfig, SiteConfig, UtmSettings
from digest.errors import TemplateError
from digest.models import Selection, Story, TopStory
from digest.personalize import personalize, recipient_values
from digest.render import Renderer, add_utm, relative_time, size_warnings

from conftest import EDITION_TIME

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


def test_media_queries_stay_in_a_style_block(renderer):
    styles = re.findall(r"<style[^>]*>(.*?)</style>", render(renderer).html, flags=re.S)
    assert any("@media" in block for block in styles)
    assert all("@media" in block for block in styles), "only @media rules stay in <style>"


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


def test_footer_has_address_reason_and_a_visible_unsubscribe_link(renderer):
    rendered = render(renderer, topics=("world",))
    html = personalize(rendered.html, recipient_values("Ana", "https://news.test/u/TOKEN"))
    assert "1 Test Street, Testville" in html
    assert "Test Daily" in html and "world" in html
    assert re.search(r'<a [^>]*href="https://news.test/u/TOKEN"[^>]*>\s*Unsubscribe', html)
    text = personalize(rendered.text, recipient_values("Ana", "https://news.test/u/TOKEN"))
    assert "https://news.test/u/TOKEN" in text


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


def test_a_missing_template_folder_is_a_clear_error(tmp_path):
    with pytest.raises(TemplateError, match="does not exist"):
        Renderer(tmp_path / "nope")


def fixture_context() -> dict:
    """Every variable an email template may use, with realistic values."""
    from types import SimpleNamespace

    from digest.render import StoryView

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
        "reader": SimpleNamespace(greeting="Hello Ana,"),
        "unsubscribe_url": "https://news.test/u/T",
        "preferences_url": "https://news.test/u/T#preferences",
        "confirm_url": "https://news.test/confirm/T",
        "already_subscribed": False,
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
