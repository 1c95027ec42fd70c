"""The lineup in the email's order, with pinned, dropped and unscored stories marked."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from digest.edition.edits import record_edit
from digest.lineup import lineup
from digest.newsroom.stories import set_story_editorial
from digest.preview import variant_target

from helpers import EDITION_TIME, add_stories, story


def rows_of(db, config, **newsletter):
    daily = replace(config.newsletters["daily"], **newsletter)
    config = replace(config, newsletters={"daily": daily})
    return lineup(db, variant_target(db, config, None, EDITION_TIME - timedelta(minutes=1)))


def test_the_lineup_is_in_the_emails_order_top_then_recent_then_left_out(config, db):
    ids = add_stories(
        db,
        *(story(hours, title=f"S{hours}", score=0 if hours % 2 else 5) for hours in range(1, 8)),
    )
    rows = rows_of(db, config, top_stories=2, recent_posts=2, also_read=False)
    places = [row.place for row in rows]
    assert places[:4] == ["top 1", "top 2", "recent 1", "recent 2"]
    assert set(places[4:]) == {"left out"}
    assert len(rows) == len(ids)


def test_normal_recent_posts_are_not_flagged_as_displaced(config, db):
    add_stories(db, *(story(hours, title=f"S{hours}") for hours in range(1, 6)))
    rows = rows_of(db, config, top_stories=2, recent_posts=3, also_read=False)
    assert [row.flag for row in rows] == [""] * 5
    assert rows[2].note.startswith("displaced by top_stories")


def test_pinned_dropped_and_unscored_stories_are_marked(config, db):
    pinned, _, _, dropped = add_stories(
        db,
        story(1, title="Pinned"),
        story(2, title="Scored", score=3),
        story(3, title="Unscored"),
        story(4, title="Dropped"),
    )
    set_story_editorial(db, str(pinned), pinned=True)
    record_edit(db, "daily", "2026-11-26", "drop", "editor", story=str(dropped))
    rows = {row.story.title: row for row in rows_of(db, config)}
    assert rows["Pinned"].marks == ("pinned",)
    assert rows["Scored"].marks == ()
    assert rows["Unscored"].marks == ("unscored",)
    assert rows["Dropped"].place == "dropped" and "dropped" in rows["Dropped"].marks
    assert list(rows)[-1] == "Dropped"
