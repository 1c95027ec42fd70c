"""Checks hold the slot: `digest run` and `digest send` check every variant before queueing it.

Two readers in UTC, one reading world news (whose top story has an http image: a check
error) and one reading sport. Real runs through the outbox, stepped through the morning.
"""

from __future__ import annotations

import getpass
from datetime import timedelta

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.clock import to_db
from digest.delivery.holds import hold, release
from digest.delivery.send import send_newsletter
from digest.delivery.slots import recent_runs, recent_slots
from digest.delivery.transports.outbox import OutboxTransport
from digest.errors import DigestError, SlotHeldError
from digest.readers.subscribers import add_subscriber
from digest.run import run_due
from digest.status import digest_status

from helpers import EDITION_TIME, add_stories, story, write_config

SLOT = EDITION_TIME  # 07:00 UTC; the test config's grace is 6 hours
HTTP_IMAGE = "http://images.news.test/tram.jpg"


def recipients(config) -> set[str]:
    return {path.stem for path in config.outbox_dir.rglob("*.eml")}


@pytest.fixture
def newsroom(db):
    add_stories(
        db,
        story(1, url="https://news.test/tram", title="Tram", image_url=HTTP_IMAGE),
        story(2, title="Cup final tonight", category="sport"),
    )
    add_subscriber(db, "world@example.com", "", ["world"])
    add_subscriber(db, "sport@example.com", "", ["sport"])
    return db


def fix_the_image(db) -> None:
    from digest.newsroom.stories import upsert_stories

    upsert_stories(
        db,
        [story(1, url="https://news.test/tram", title="Tram", image_url="https://i.test/t.jpg")],
        "test",
    )


def run(db, config, minutes: int, **options):
    return run_due(
        db, config, SLOT + timedelta(minutes=minutes), transport=OutboxTransport(config), **options
    )


def test_a_check_error_holds_only_its_variant_and_fails_the_run(newsroom, config):
    report = run(newsroom, config, 5)
    assert recipients(config) == {"sport@example.com"}
    assert report.failed
    assert any("HELD" in line and "not on https" in line for line in report.lines)
    [slot] = recent_slots(newsroom, "daily")
    assert slot.status == "held"
    assert "1 variant(s), 1 readers" in slot.note and HTTP_IMAGE in slot.note


def test_after_a_fix_the_next_run_within_grace_sends_the_held_variant_once(newsroom, config):
    run(newsroom, config, 5)
    fix_the_image(newsroom)
    report = run(newsroom, config, 10)
    assert not report.failed
    assert recipients(config) == {"sport@example.com", "world@example.com"}
    [slot] = recent_slots(newsroom, "daily")
    assert (slot.status, slot.sent) == ("sent", 2)
    assert (
        "https://i.test/t.jpg"
        in (
            config.outbox_dir / next(p for p in config.outbox_dir.rglob("world@example.com.eml"))
        ).read_text()
    )
    # And never twice.
    assert run(newsroom, config, 15).lines == ["nothing due"]


def test_a_held_variant_still_broken_past_grace_is_never_sent(newsroom, config):
    run(newsroom, config, 5)
    run(newsroom, config, 6 * 60 - 5)
    assert run(newsroom, config, 6 * 60 + 5).lines[-1] == "nothing due"
    assert recipients(config) == {"sport@example.com"}


def test_warnings_never_hold(db, config):
    add_stories(db, story(1, title="A headline " * 12))  # a subject far past 78 characters
    add_subscriber(db, "ana@example.com")
    report = run(db, config, 5)
    assert not report.failed and recipients(config) == {"ana@example.com"}


def test_force_sends_the_held_variant_and_records_who(newsroom, config):
    report = run(newsroom, config, 5, force=True)
    assert not report.failed
    assert recipients(config) == {"sport@example.com", "world@example.com"}
    [slot] = recent_slots(newsroom, "daily")
    assert slot.status == "sent"
    assert slot.note == f"forced past check errors by {getpass.getuser()}"


def test_digest_send_holds_the_variant_and_says_how_to_go_on(newsroom, config):
    report = send_newsletter(
        newsroom, config, None, SLOT + timedelta(minutes=5), transport=OutboxTransport(config)
    )
    assert recipients(config) == {"sport@example.com"}
    assert report.needs_attention
    [held] = report.held
    assert held.audience == 1 and "not on https" in held.line()
    assert any("--force" in line for line in report.attention())
    [last] = recent_runs(newsroom, 1)
    assert last.command == "send" and last.failed


def test_the_cli_run_exits_non_zero_on_a_held_variant(newsroom, config, project_dir):
    # The command reads the test's own database (open here too), not a copy of its file.
    write_config(project_dir, store={"path": str(config.db_path)})
    result = CliRunner().invoke(cli, ["run", "--now", "2026-11-26T07:05:00Z"])
    assert result.exit_code == 1
    assert "HELD" in result.output


def test_an_editors_hold_keeps_the_slot_until_released(newsroom, config):
    hold(newsroom, "daily", None, None, "editor", SLOT)
    report = run(newsroom, config, 5)
    assert recipients(config) == set()
    assert any("HELD, not sent: daily held by editor" in line for line in report.lines)
    assert not report.failed
    [slot] = recent_slots(newsroom, "daily")
    assert slot.status == "held" and "digest release daily" in slot.note
    release(newsroom, "daily", None, "editor")
    run(newsroom, config, 10, force=True)
    assert recipients(config) == {"sport@example.com", "world@example.com"}


def test_a_hold_on_one_zone_leaves_the_others(db, config):
    add_stories(db, story(12))
    add_subscriber(db, "utc@example.com")
    add_subscriber(db, "tokyo@example.com", "", [], "Asia/Tokyo")
    hold(db, "daily", "UTC", None, "editor", SLOT)
    # Tokyo's 07:00 is 22:00 UTC the evening before: a run then sends it.
    run(db, config, -9 * 60 + 5)
    run(db, config, 5)
    assert recipients(config) == {"tokyo@example.com"}


def test_a_hold_with_until_ends_by_itself(newsroom, config):
    hold(newsroom, "daily", None, SLOT + timedelta(minutes=30), "editor", SLOT)
    run(newsroom, config, 5)
    assert recipients(config) == set()
    run(newsroom, config, 35, force=True)
    assert recipients(config) == {"sport@example.com", "world@example.com"}


def test_digest_send_refuses_a_held_newsletter(newsroom, config):
    hold(newsroom, "daily", None, None, "editor", SLOT)
    with pytest.raises(SlotHeldError, match="held by editor"):
        send_newsletter(
            newsroom, config, None, SLOT + timedelta(minutes=5), transport=OutboxTransport(config)
        )


def test_releasing_what_is_not_held_says_so(newsroom):
    with pytest.raises(DigestError, match="not held"):
        release(newsroom, "daily", None, "editor")
    hold(newsroom, "daily", None, None, "editor", SLOT)
    with pytest.raises(DigestError, match="held in every time zone"):
        release(newsroom, "daily", "UTC", "editor")


def test_status_lists_the_held_slot_with_its_deadline_and_readers(newsroom, config):
    run(newsroom, config, 5)
    lines = digest_status(newsroom, config, SLOT + timedelta(minutes=48)).lines()
    attention = "\n".join(lines[lines.index("  needs attention:") :])
    assert "held: daily UTC" in attention
    # The held variant's reader, not the zone's two.
    assert "; 1 readers; missed at" in attention
    assert "missed at 2026-11-26 13:00 UTC, in 5 h 12 m; `digest check`" in attention


def test_status_lists_a_failed_slot_and_nothing_else_says_nothing(newsroom, config, tmp_path):
    import shutil

    from digest.config import with_overrides

    assert "  needs attention: nothing" in digest_status(newsroom, config, SLOT).lines()
    templates = tmp_path / "broken"
    shutil.copytree(config.templates_dir, templates)
    (templates / "digest.html").write_text("{% if %}", encoding="utf-8")
    broken = with_overrides(config, templates_dir=templates)
    report = run(newsroom, broken, 5)
    assert report.failed
    lines = digest_status(newsroom, broken, SLOT + timedelta(hours=7)).lines()
    attention = [line for line in lines if line.startswith("    failed: daily UTC")]
    assert len(attention) == 1
    assert "2 readers" in attention[0]
    assert "missed at 2026-11-26 13:00 UTC, 1 h 0 m ago" in attention[0]


def test_status_counts_sends_made_by_digest_send(newsroom, config):
    fix_the_image(newsroom)
    send_newsletter(
        newsroom, config, None, SLOT + timedelta(minutes=5), transport=OutboxTransport(config)
    )
    lines = digest_status(newsroom, config, SLOT + timedelta(hours=1)).lines()
    assert lines[1] == "last runs:"
    assert "digest send  ok: daily at 2026-11-26 07:00 UTC: sent 2" in lines[2]


def test_hold_and_release_on_the_command_line(newsroom, config, project_dir):
    # The command reads the test's own database (open here too), not a copy of its file.
    write_config(project_dir, store={"path": str(config.db_path)})
    runner = CliRunner()
    held = runner.invoke(cli, ["hold", "daily", "--zone", "UTC", "--until", "2099-01-01T00:00"])
    assert held.exit_code == 0, held.output
    assert f"daily in UTC held by {getpass.getuser()}" in held.output
    assert "until 2099-01-01 00:00 UTC" in held.output
    status = runner.invoke(cli, ["status", "--now", "2026-11-26T07:00:00Z"])
    assert "held by hand: daily in UTC held by" in status.output
    assert "(2026-11-26 07:00 UTC): record held (daily in UTC held by" in status.output
    released = runner.invoke(cli, ["release", "daily", "--zone", "UTC"])
    assert released.exit_code == 0 and "released: daily in UTC" in released.output
    again = runner.invoke(cli, ["release", "daily"])
    assert again.exit_code == 1 and "is not held" in again.output
    bad = runner.invoke(cli, ["hold", "daily", "--zone", "Mars/Base"])
    assert bad.exit_code == 1 and "Mars/Base" in bad.output


def test_the_studio_desk_shows_a_held_slot_and_the_fix_that_will_send_it(newsroom, config):
    from digest.studio import create_studio

    run(newsroom, config, 5)
    studio = create_studio(lambda: config, OutboxTransport(config)).test_client()
    now = {"now": "2026-11-26T07:20:00Z"}
    page = studio.get("/", query_string=now).get_data(as_text=True)
    assert 'class="zone state-held"' in page
    assert "not on https" in page and "missed at 2026-11-26 13:00 UTC, in 5 h 40 m" in page
    fix_the_image(newsroom)
    page = studio.get("/", query_string=now | {"topics": "world", "timezone": "UTC"})
    shown = page.get_data(as_text=True)
    # Still recorded held until the next run; its email is the one that run would send.
    assert "Held: nothing goes to this variant" in shown
    assert "https://i.test/t.jpg" in studio.get(
        "/email.html", query_string=now | {"topics": "world", "timezone": "UTC"}
    ).get_data(as_text=True)
    assert 'class="finding error"' not in shown


def test_a_held_variant_emptied_by_edits_stays_held_even_forced(newsroom, config):
    from digest.edition.edits import record_edit

    run(newsroom, config, 5)
    record_edit(newsroom, "daily", "2026-11-26", "drop", "editor", story="https://news.test/tram")
    report = run(newsroom, config, 10, force=True)
    assert recipients(config) == {"sport@example.com"}
    assert any("only 0 stories left (min_stories 1)" in line for line in report.lines)


def test_digest_send_force_on_the_command_line_says_who_forced_it(newsroom, config, project_dir):
    # The command reads the test's own database (open here too), not a copy of its file.
    write_config(project_dir, store={"path": str(config.db_path)})
    result = CliRunner().invoke(
        cli, ["send", "--timezone", "UTC", "--now", "2026-11-26T07:05:00Z", "--force"]
    )
    assert result.exit_code == 0, result.output
    assert f"(forced past check errors by {getpass.getuser()})" in result.output
    assert "sent 2" in result.output


def test_a_reader_who_leaves_while_their_variant_is_held_is_skipped_once_it_goes(newsroom, config):
    from digest.readers.subscribers import unsubscribe

    add_subscriber(newsroom, "world2@example.com", "", ["world"])
    run(newsroom, config, 5)
    unsubscribe(newsroom, "world@example.com")
    fix_the_image(newsroom)
    run(newsroom, config, 10)
    run(newsroom, config, 15)

    assert recipients(config) == {"sport@example.com", "world2@example.com"}
    assert len(list(config.outbox_dir.rglob("*.eml"))) == 2
    statuses = dict(
        newsroom.execute("SELECT email, status FROM deliveries WHERE email LIKE 'world%'")
    )
    assert statuses == {"world@example.com": "skipped", "world2@example.com": "sent"}


def test_past_grace_a_held_variants_readers_are_skipped_and_its_stories_still_news_for_them(
    newsroom, config
):
    from dataclasses import replace

    daily = replace(config.newsletters["daily"], window_hours=48)
    config = replace(config, newsletters={"daily": daily})
    run(newsroom, config, 5)
    fix_the_image(newsroom)

    past_grace = run(newsroom, config, 6 * 60 + 5)
    next_day = run(newsroom, config, 24 * 60 + 5)

    assert past_grace.lines[0].endswith(
        "held past its grace; 1 readers still queued are skipped, never sent late"
    )
    [(status, error)] = newsroom.execute(
        """SELECT status, error FROM deliveries JOIN editions ON editions.id = edition_id
           WHERE email = 'world@example.com' AND slot_at = ?""",
        [to_db(SLOT)],
    )
    assert (status, error) == ("skipped", "not sent within grace: the slot was missed")
    # The Tram story never reached them: it is news in their next edition.
    assert not next_day.failed
    [sent] = [p for p in config.outbox_dir.rglob("world@example.com.eml")]
    assert "Tram" in sent.read_text()
