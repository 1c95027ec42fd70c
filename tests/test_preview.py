"""What editors see is what readers get: the studio and `digest preview --as` against `digest run`.

Four readers in four time zones, with their own topics and a no-repeat history, are sent
their digest by `digest run` (outbox transport). Before that, the studio (over HTTP) and
`digest preview --as` showed each of them their email: the same subject, the same stories
and the same HTML, but for the reader's own link, which previews make inert.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.config import load_config
from digest.delivery.transports.outbox import OutboxTransport
from digest.lineup import lineup
from digest.newsroom.stories import set_story_editorial
from digest.preview import reader_target, variant_target, write_preview
from digest.readers.subscribers import add_subscriber
from digest.run import run_due
from digest.store import open_db
from digest.studio import create_studio

from helpers import add_stories, story, write_config

READERS = {
    "tokyo@example.com": ("Asia/Tokyo", ()),
    "kolkata@example.com": ("Asia/Kolkata", ("business", "science")),
    "london@example.com": ("Europe/London", ()),
    "newyork@example.com": ("America/New_York", ("world",)),
}
# 07:00 local on 26 November 2026 (Tokyo's is the evening before in UTC).
SLOTS = {
    "tokyo@example.com": datetime(2026, 11, 25, 22, 0, tzinfo=UTC),
    "kolkata@example.com": datetime(2026, 11, 26, 1, 30, tzinfo=UTC),
    "london@example.com": datetime(2026, 11, 26, 7, 0, tzinfo=UTC),
    "newyork@example.com": datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
}
# The editor looks an hour before the first of them.
LOOK = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)
ANY_READER_LINK = re.compile(r"https://news\.test/u/[^\s\"'<>#]+")
CATEGORIES = ("world", "business", "science", "sport")


def token_aside(text: str) -> str:
    return ANY_READER_LINK.sub("https://news.test/u/TOKEN", text)


@pytest.fixture
def newsroom(project_dir: Path):
    """A project with four readers and a day and a half of stories, Tokyo sent once already."""
    write_config(project_dir)
    config = load_config(project_dir / "digest.toml", env={})
    db = open_db(config.db_path)
    for email, (zone, topics) in READERS.items():
        add_subscriber(db, email, email.split("@")[0].title(), topics, zone)
    start = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)
    rows = [
        story(
            at=start + timedelta(minutes=90 * n),
            hours_ago=0,
            category=CATEGORIES[n % 4],
            score=float(n % 5),
        )
        for n in range(18)  # the last one at 20:30 UTC on 25 November, before LOOK
    ]
    ids = add_stories(db, *rows)
    set_story_editorial(db, str(ids[-3]), pinned=True)
    # Tokyo's 25 November digest went out: those stories are not sent to Tokyo again.
    run_due(
        db, config, datetime(2026, 11, 24, 22, 5, tzinfo=UTC), transport=OutboxTransport(config)
    )
    yield config, db
    db.close()


def sent_email(config, db, email: str) -> dict:
    """The message `digest run` wrote for a reader at their 26 November slot, and its stories."""
    slot = SLOTS[email]
    [story_ids] = db.execute(
        """SELECT editions.story_ids FROM deliveries
           JOIN editions ON editions.id = deliveries.edition_id
           WHERE editions.slot_at = ? AND deliveries.email = ?""",
        [slot.strftime("%Y-%m-%dT%H:%M:%SZ"), email],
    ).fetchone()
    [path] = [
        p
        for p in config.outbox_dir.rglob(f"{email}.eml")
        if f"{slot:%Y%m%dT%H%MZ}" in p.parent.name
    ]
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    return {
        "subject": message["Subject"],
        "story_ids": json.loads(story_ids),
        # Lines end in CRLF on the wire (the .eml); the parts themselves are the same.
        "html": message.get_body(("html",)).get_content().replace("\r\n", "\n"),
        "text": message.get_body(("plain",)).get_content().replace("\r\n", "\n"),
    }


def test_the_studio_and_preview_show_each_reader_exactly_what_digest_run_sends(newsroom):
    config, db = newsroom
    studio = create_studio(lambda: config, OutboxTransport(config)).test_client()
    runner = CliRunner()
    shown = {}
    for email in READERS:
        query = {"as": email, "now": LOOK.isoformat()}
        checks = studio.get("/checks.json", query_string=query).get_json()
        [variant] = checks["variants"]
        out = Path(f"preview-{email}")
        result = runner.invoke(
            cli, ["preview", "--as", email, "--now", LOOK.isoformat(), "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        shown[email] = {
            "subject": variant["subject"],
            "story_ids": variant["story_ids"],
            "html": studio.get("/email.html", query_string=query).get_data(as_text=True),
            "text": studio.get("/email.txt", query_string=query).get_data(as_text=True),
            "preview_html": (out / "daily.html").read_text(encoding="utf-8"),
            "preview_subject": result.output,
        }

    for slot in sorted(SLOTS.values()):
        run_due(db, config, slot + timedelta(minutes=5), transport=OutboxTransport(config))

    leads = set()
    for email in READERS:
        sent = sent_email(config, db, email)
        seen = shown[email]
        assert seen["subject"] == sent["subject"]
        assert sent["subject"] in seen["preview_subject"]
        assert seen["story_ids"] == sent["story_ids"]
        assert token_aside(seen["html"]) == token_aside(sent["html"])
        assert token_aside(seen["preview_html"]) == token_aside(sent["html"])
        assert token_aside(seen["text"]) == token_aside(sent["text"])
        leads.add(sent["story_ids"][0])
    assert len(leads) > 1, "the four readers' digests should not all lead with one story"


def test_previews_carry_inert_links_never_a_readers_own(newsroom, project_dir):
    config, db = newsroom
    preview = write_preview(db, config, None, LOOK, project_dir / "pv", "london@example.com")
    html = preview.html_path.read_text(encoding="utf-8")
    text = preview.text_path.read_text(encoding="utf-8")
    assert set(ANY_READER_LINK.findall(html + text)) == {"https://news.test/u/preview"}


def test_the_inert_link_answers_this_is_a_preview_and_changes_nobody(config):
    from digest.web import create_app

    client = create_app(config).test_client()
    for method in (client.get, client.post):
        answer = method("/u/preview", data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 200
        assert "This is a preview" in answer.get_data(as_text=True)


def test_preview_targets_the_next_slot_by_default_and_the_last_with_a_flag(newsroom):
    config, db = newsroom
    # At 07:30 London time the 07:00 slot was sent (by the run below): next is tomorrow's.
    run_due(
        db,
        config,
        SLOTS["london@example.com"] + timedelta(minutes=5),
        transport=OutboxTransport(config),
    )
    later = SLOTS["london@example.com"] + timedelta(minutes=30)
    nxt = reader_target(db, config, None, later, "london@example.com")
    last = reader_target(db, config, None, later, "london@example.com", last=True)
    assert nxt.slot_at == SLOTS["london@example.com"] + timedelta(days=1)
    assert last.slot_at == SLOTS["london@example.com"]


def test_preview_says_when_the_next_edition_would_be_skipped(project_dir):
    write_config(project_dir)
    runner = CliRunner()
    runner.invoke(cli, ["subscribers", "add", "ana@example.com"])
    result = runner.invoke(cli, ["preview", "--now", "2026-11-26T06:00:00Z"])
    assert result.exit_code == 0, result.output
    assert "next slot: 2026-11-26 07:00 UTC" in result.output
    assert "would be skipped: 0 new stories < min_stories 1" in result.output


def test_the_lineup_flags_a_pinned_story_that_per_category_pushed_out(config, db):
    daily = replace(config.newsletters["daily"], per_category=1)
    config = replace(config, newsletters={"daily": daily})
    at = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
    ids = add_stories(
        db,
        story(1, at=at, category="world", score=9, title="Big world story"),
        story(2, at=at, category="world", title="Pinned world story"),
        story(3, at=at, category="science", title="Science story"),
    )
    set_story_editorial(db, str(ids[0]), pinned=True)
    set_story_editorial(db, str(ids[1]), pinned=True)
    rows = {row.story.title: row for row in lineup(db, variant_target(db, config, None, at))}
    assert rows["Big world story"].place == "top 1"
    pushed = rows["Pinned world story"]
    assert pushed.place != "top 2" and pushed.flag.startswith(
        "pinned, but displaced by per_category"
    )
    assert rows["Science story"].place == "top 2"


def test_a_reader_who_left_is_told_they_would_get_nothing(newsroom):
    from digest.edition.render import Renderer
    from digest.preview import reader_view
    from digest.readers.subscribers import unsubscribe

    config, db = newsroom
    unsubscribe(db, "london@example.com")
    target = reader_target(db, config, None, LOOK, "london@example.com")
    view = reader_view(db, config, Renderer(config.templates_dir), target)
    assert (
        view.note == "london@example.com is not an active reader of daily: they would get nothing."
    )
