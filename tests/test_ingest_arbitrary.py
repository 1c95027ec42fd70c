"""Arbitrary rows in every ingest format: each is stored whole or skipped with a reason.

Hypothesis writes RSS, Atom, JSON Feed, JSON Lines and CSV files whose fields are drawn from
plausible values (good links and dates, far dates, hostile links) and from anything the
format can carry (lists, objects, numbers, control characters, lone surrogates in JSON).
Whatever comes in: no traceback, every item stored or answered with a one-line reason,
and every stored row complete and readable.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ingest import STORY_KEYS

from digest.clock import from_db
from digest.newsroom.ingest import ingest_sources
from digest.newsroom.stories import list_stories
from digest.store import open_db

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
FIELDS = tuple(sorted(STORY_KEYS))


def xml_legal(ch: str) -> bool:
    code = ord(ch)
    return ch in "\t\n" or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or code > 0xFFFF


# Text any file can hold (no lone surrogates); XML text also only what XML 1.0 allows.
file_text = st.text(st.characters(codec="utf-8"), max_size=30)
xml_text = st.text(st.characters(codec="utf-8").filter(xml_legal), max_size=30)
json_text = st.text(max_size=30)
moments = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=0))
offsets = st.integers(-14 * 60, 14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))
dates = st.one_of(
    st.sampled_from(
        ["2026-11-24T10:00:00Z", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"]
    ),
    st.builds(lambda m, tz: m.replace(tzinfo=tz).isoformat(), moments, offsets),
    st.builds(lambda hours: (NOW - timedelta(hours=hours)).isoformat(), st.integers(-48, 200)),
)
urls = st.one_of(
    st.integers(0, 5).map(lambda n: f"https://news.test/{n}"),
    st.sampled_from(["http://news.test/a?x=1&y=<2>", "javascript:alert(1)", "/relative", ""]),
)
plausible = {
    "guid": st.integers(0, 3).map(lambda n: f"g{n}"),
    "url": urls,
    "title": st.sampled_from(["Floods", "<b>Bold</b> &amp; more", "  "]),
    "summary": st.sampled_from(["<p>Rivers <script>x()</script>rose</p>", ""]),
    "author": st.sampled_from(["Amira Haddad", ""]),
    "category": st.sampled_from(["world", ""]),
    "image_url": st.sampled_from(["https://cdn.news.test/a.jpg", "data:image/png,xx"]),
    "published_at": dates,
    "score": st.one_of(st.floats(), st.integers(), st.sampled_from(["7.5", "", "high"])),
    "pinned": st.sampled_from([True, False, "yes", "", "maybe", None]),
}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | json_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_text, inner, max_size=3),
    max_leaves=5,
)


def rows(values_for) -> st.SearchStrategy[dict]:
    """A row with any of the fields, each plausible or drawn from values_for."""
    fields = {key: st.one_of(plausible[key], values_for) for key in FIELDS}
    return st.fixed_dictionaries({}, optional=fields)


def as_text(value) -> str:
    return "" if value is None else str(value)


def rss(items: list[dict]) -> bytes:
    def item(row: dict) -> str:
        date = row.get("published_at")
        parsed = _moment(date)
        date = format_datetime(parsed) if parsed else as_text(date)
        parts = [
            f"<guid>{escape(as_text(row.get('guid')))}</guid>",
            f"<title>{escape(as_text(row.get('title')))}</title>",
            f"<link>{escape(as_text(row.get('url')))}</link>",
            f"<description>{escape(as_text(row.get('summary')))}</description>",
            f"<author>{escape(as_text(row.get('author')))}</author>",
            f"<category>{escape(as_text(row.get('category')))}</category>",
            f"<pubDate>{escape(date)}</pubDate>",
        ]
        return "<item>" + "".join(parts) + "</item>"

    body = "".join(item(row) for row in items)
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>T</title>'
        f"{body}</channel></rss>"
    ).encode()


def atom(items: list[dict]) -> bytes:
    def entry(row: dict) -> str:
        link = escape(as_text(row.get("url")), {'"': "&quot;"})
        return (
            f"<entry><id>{escape(as_text(row.get('guid')))}</id>"
            f"<title type='html'>{escape(as_text(row.get('title')))}</title>"
            f'<link href="{link}"/>'
            f"<summary type='html'>{escape(as_text(row.get('summary')))}</summary>"
            f"<author><name>{escape(as_text(row.get('author')))}</name></author>"
            f"<updated>{escape(as_text(row.get('published_at')))}</updated></entry>"
        )

    body = "".join(entry(row) for row in items)
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>T</title><id>urn:t</id><updated>2026-11-24T00:00:00Z</updated>{body}</feed>"
    ).encode()


def _moment(value) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else None


def json_feed(items: list) -> bytes:
    renamed = [
        {
            {"guid": "id", "published_at": "date_published", "image_url": "image"}.get(k, k): v
            for k, v in item.items()
        }
        if isinstance(item, dict)
        else item
        for item in items
    ]
    for item in renamed:
        if isinstance(item, dict) and "author" in item:
            item["authors"] = [{"name": item.pop("author")}]
        if isinstance(item, dict) and "category" in item:
            item["tags"] = [item.pop("category")]
    return json.dumps({"version": "https://jsonfeed.org/version/1.1", "items": renamed}).encode()


def jsonl(items: list) -> bytes:
    return "\n".join(json.dumps(item) for item in items).encode()


def csv_file(items: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(FIELDS)
    for item in items:
        writer.writerow([as_text(item.get(key)) for key in FIELDS])
    return out.getvalue().encode()


# Each format's writer and what it gets: rows, and in JSON also items that are not objects.
json_items = st.lists(st.one_of(rows(json_values), json_values), max_size=6)
FORMATS = {
    "feed.rss.xml": (rss, st.lists(rows(xml_text), max_size=6)),
    "feed.atom.xml": (atom, st.lists(rows(xml_text), max_size=6)),
    "feed.json": (json_feed, json_items),
    "stories.jsonl": (jsonl, json_items),
    "stories.csv": (csv_file, st.lists(rows(file_text), max_size=6)),
}
# The fields stored as text as given; JSON Feed's authors and tags are lists by the spec, and
# an image that is not a URL is dropped, so neither can store a repr.
TEXT_FIELDS = {
    "feed.json": ("guid", "url", "title", "summary"),
    "stories.jsonl": ("guid", "url", "title", "summary", "author", "category"),
}


def carried_only_text(item: object, fields: tuple[str, ...]) -> bool:
    return isinstance(item, dict) and all(
        item.get(key) is None
        or (isinstance(item[key], str | int | float) and not isinstance(item[key], bool))
        for key in fields
    )


def check_ingest(name: str, data: bytes, items: list) -> None:
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / name
        source.write_bytes(data)
        db = open_db(Path(folder) / "digest.db")
        try:
            [result] = ingest_sources(db, [str(source)], now=NOW).results
            stored = list_stories(db, limit=1000)
        finally:
            db.close()

    if result.error is not None:
        assert result.error.startswith(f"{source}: ") and "\n" not in result.error
        assert stored == []
        return
    # Every item is stored or answered: nothing vanishes without a reason.
    assert (result.updated, result.unchanged) == (0, 0)
    answered = result.added + len(result.skipped)
    if any("unreadable from here on" in reason for reason in result.skipped):
        assert answered <= len(items)
    else:
        assert answered == len(items)
    assert len(stored) == result.added
    for reason in result.skipped:
        assert reason.startswith(("item ", "line ")) and "\n" not in reason
    # Every stored row is whole: required text present, clean, and readable back.
    for story in stored:
        assert story.url.startswith(("http://", "https://"))
        assert story.title.strip()
        for text in (story.title, story.summary, story.author, story.category, story.guid):
            assert not any(unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") for ch in text)
        assert math.isfinite(story.score)
        assert datetime(1970, 1, 1, tzinfo=UTC) <= story.published_at <= NOW + timedelta(days=1)
        assert from_db(story.published_at.strftime("%Y-%m-%dT%H:%M:%SZ")) == story.published_at
        if name in TEXT_FIELDS:
            # Never a list or an object stored as its Python repr.
            assert any(
                carried_only_text(item, TEXT_FIELDS[name])
                and str(item.get("url")).strip() == story.url
                for item in items
            )


@pytest.mark.parametrize("name", list(FORMATS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_arbitrary_rows_are_stored_whole_or_skipped_with_a_reason(name, data):
    write, items_strategy = FORMATS[name]
    items = data.draw(items_strategy)

    check_ingest(name, write(items), items)
