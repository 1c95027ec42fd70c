"""Per-edition edits: drop a story from one edition, its own subject, preheader and note.

Each is kept with the edition (its local date), applied when it is built, and audited.
"""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.delivery.send import send_newsletter
from digest.delivery.transports.outbox import OutboxTransport
from digest.edition.edits import current_edits, edit_trail, record_edit
from digest.errors import DigestError
from digest.newsroom.stories import find_story, set_story_editorial
from digest.readers.subscribers import add_subscriber

from helpers import EDITION_TIME, add_stories, story, write_config

NOW = EDITION_TIME + timedelta(minutes=5)
TODAY = "2026-11-26"


@pytest.fixture
def newsroom(db):
    ids = add_stories(
        db,
        story(1, url="https://news.test/tram", title="Tram runs all night"),
        story(2, url="https://news.test/otters", title="Otters return", category="science"),
    )
    add_subscriber(db, "ana@example.com", "Ana")
    return db, ids


def sent_email(config) -> str:
    [path] = config.outbox_dir.rglob("ana@example.com.eml")
    return path.read_text(encoding="utf-8")


def send(db, config):
    return send_newsletter(db, config, None, NOW, transport=OutboxTransport(config))


def test_a_dropped_story_leaves_this_edition_but_not_the_store(newsroom, config):
    db, (tram, _) = newsroom
    record_edit(db, "daily", TODAY, "drop", "editor", story=str(tram))
    send(db, config)
    email = sent_email(config)
    assert "Otters return" in email and "Tram runs all night" not in email
    assert find_story(db, str(tram)).title == "Tram runs all night"
    assert current_edits(db, "daily", "2026-11-27").dropped == frozenset()


def test_a_restored_story_comes_back(newsroom, config):
    db, (tram, _) = newsroom
    record_edit(db, "daily", TODAY, "drop", "editor", story=str(tram))
    record_edit(db, "daily", TODAY, "restore", "editor", story="https://news.test/tram")
    send(db, config)
    assert "Tram runs all night" in sent_email(config)


def test_the_editions_subject_preheader_and_note_go_out(newsroom, config):
    db, _ = newsroom
    record_edit(db, "daily", TODAY, "subject", "editor", value="Night trams, and otters")
    record_edit(db, "daily", TODAY, "preheader", "editor", value="What you missed while asleep")
    record_edit(db, "daily", TODAY, "note", "editor", value="Our bridge coverage starts at 6.")
    report = send(db, config)
    [result] = report.editions
    assert result.edition.subject == "Night trams, and otters"
    assert result.edition.preheader == "What you missed while asleep"
    message = email.message_from_string(sent_email(config), policy=email.policy.default)
    assert message["Subject"] == "Night trams, and otters"
    text, html = (part.get_content() for part in message.iter_parts())
    assert "Our bridge coverage starts at 6." in text
    assert '<p class="editor-note"' in html and "Our bridge coverage starts at 6." in html


def test_every_edit_is_in_the_audit_trail_and_the_newest_wins(newsroom):
    db, (tram, _) = newsroom
    record_edit(db, "daily", TODAY, "subject", "ana", value="First")
    record_edit(db, "daily", TODAY, "subject", "bo", value="Second")
    record_edit(db, "daily", TODAY, "drop", "bo", story=str(tram))
    trail = edit_trail(db, "daily", TODAY)
    assert [(e.who, e.action, e.value) for e in trail] == [
        ("ana", "subject", "First"),
        ("bo", "subject", "Second"),
        ("bo", "drop", ""),
    ]
    assert "bo set the subject to 'Second'" in trail[1].describe()
    assert current_edits(db, "daily", TODAY).subject == "Second"


@pytest.mark.parametrize(
    ("action", "value", "story", "message"),
    [
        ("subject", "x" * 151, None, "The subject is 151 characters; at most 150"),
        ("note", "x" * 1001, None, "The note is 1001 characters; at most 1000"),
        ("preheader", "bell\x07", None, "control characters"),
        ("drop", "", "999", "No story with id or url '999'"),
        ("drop", "", " ", "Say which story to drop"),
        ("shout", "", None, "Unknown edit 'shout'"),
    ],
)
def test_bad_edits_are_refused_with_a_message_and_nothing_kept(
    newsroom, action, value, story, message
):
    db, _ = newsroom
    with pytest.raises(DigestError, match=message):
        record_edit(db, "daily", TODAY, action, "editor", value=value, story=story)
    assert edit_trail(db, "daily") == []


def test_an_edition_must_be_a_date(newsroom):
    db, _ = newsroom
    with pytest.raises(DigestError, match="not a date; give the edition's local date"):
        record_edit(db, "daily", "tomorrow", "note", "editor", value="Hi")


@pytest.mark.parametrize("score", [-5.0, float("nan")])
def test_a_negative_or_not_a_number_score_is_refused_with_a_message(newsroom, score):
    db, (tram, _) = newsroom
    with pytest.raises(DigestError, match=r"below 0|not a number"):
        set_story_editorial(db, str(tram), score=score)
    assert find_story(db, str(tram)).score == 0


def test_the_edition_commands_edit_the_next_edition_and_show_the_trail(
    newsroom, config, project_dir
):
    # The command reads the test's own database (open here too), not a copy of its file.
    write_config(project_dir, store={"path": str(config.db_path)})
    _, (tram, _) = newsroom
    runner = CliRunner()
    now = ["--now", "2026-11-26T05:00:00Z"]
    dropped = runner.invoke(cli, ["edition", "drop", str(tram), *now])
    assert dropped.exit_code == 0, dropped.output
    assert "daily 2026-11-26: " in dropped.output and f"dropped story {tram}" in dropped.output
    noted = runner.invoke(cli, ["edition", "note", "Hello all", "--edition", "2026-11-27"])
    assert noted.exit_code == 0, noted.output
    shown = runner.invoke(cli, ["edition", "show", *now])
    assert f"dropped: {tram}" in shown.output
    assert "note: the template's" in shown.output and "audit trail:" in shown.output
    bad = runner.invoke(cli, ["edition", "subject", "x" * 200, *now])
    assert bad.exit_code == 1 and "at most 150 fit" in bad.output
