"""The day strip: each time zone's slots of the 24 hours around now with state and readers, in
`digest status --html FILE` and on the studio's front page (the newsroom of test_run)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner

from digest.cli import cli
from digest.delivery.holds import hold
from digest.delivery.transports.outbox import OutboxTransport
from digest.status import digest_status, status_html
from digest.studio import create_studio

from helpers import write_config
from test_run import Newsroom

RUN_AT = datetime(2026, 11, 2, 7, 0, tzinfo=UTC)


def strip_at(newsroom: Newsroom, now: datetime) -> list[tuple[str, str, str, int]]:
    status = digest_status(newsroom.db, newsroom.config, now)
    return [
        (row["zone"], row["local"], row["state"], row["readers"])
        for row in status.newsletters[0].strip
    ]


def test_the_strip_shows_sent_and_skipped_slots_as_recorded_and_those_to_come(tmp_path):
    newsroom = Newsroom(tmp_path)
    newsroom.run(RUN_AT)
    assert strip_at(newsroom, RUN_AT + timedelta(minutes=30)) == [
        ("America/New_York", "07:00", "to come", 1),
        ("Asia/Kolkata", "07:00", "skipped", 0),
        ("Europe/London", "07:00", "sent", 1),
    ]


def test_a_slot_a_run_now_would_send_is_due_and_one_past_grace_is_missed(tmp_path):
    newsroom = Newsroom(tmp_path)
    newsroom.run(RUN_AT)
    # No run since: New York's 07:00 (12:00 UTC) is due at 12:10.
    assert ("America/New_York", "07:00", "due", 1) in strip_at(
        newsroom, datetime(2026, 11, 2, 12, 10, tzinfo=UTC)
    )
    # London's next 07:00 is past its 6 h grace at 13:30 the day after: a run would record it
    # missed.
    assert ("Europe/London", "07:00", "missed", 1) in strip_at(
        newsroom, datetime(2026, 11, 3, 13, 30, tzinfo=UTC)
    )


def test_a_slot_an_editor_holds_is_held_on_the_strip_and_a_recorded_hold_too(tmp_path):
    newsroom = Newsroom(tmp_path)
    newsroom.run(RUN_AT)
    hold(newsroom.db, "daily", "America/New_York", None, "ana", RUN_AT)
    assert ("America/New_York", "07:00", "held", 1) in strip_at(
        newsroom, RUN_AT + timedelta(minutes=30)
    )
    # The run at New York's slot records it held, with the zone's readers it kept waiting.
    newsroom.run(datetime(2026, 11, 2, 12, 0, tzinfo=UTC))
    assert ("America/New_York", "07:00", "held", 1) in strip_at(
        newsroom, datetime(2026, 11, 2, 12, 30, tzinfo=UTC)
    )


def test_status_html_draws_a_strip_per_newsletter_with_its_numbers(tmp_path):
    newsroom = Newsroom(tmp_path)
    newsroom.run(RUN_AT)
    status = digest_status(newsroom.db, newsroom.config, RUN_AT + timedelta(minutes=30))
    page = status_html(status)
    assert page.count('<svg role="img" aria-label="Slots of the 24 hours around now: ') == 1
    assert "Europe/London: 07:00 local sent (1 readers)" in page
    assert '<th scope="row">Europe/London</th><td>2026-11-02 07:00:00</td>' in page
    assert not re.search(r"<(link|script|img)\b", page)
    assert "\n".join(status.lines()) in page.replace("&#39;", "'")


def test_digest_status_html_writes_the_page_and_prints_the_status(
    tmp_path, monkeypatch, project_dir
):
    write_config(project_dir)
    answer = CliRunner().invoke(
        cli, ["status", "--now", "2026-11-02T07:30Z", "--html", "status.html"]
    )
    assert answer.exit_code == 0, answer.output
    assert "\nstatus at 2026-11-02 07:30 UTC\n" in f"\n{answer.output}"
    assert answer.output.endswith("wrote status.html\n")
    assert "The day strip" in (project_dir / "status.html").read_text()


def test_the_studio_front_page_shows_the_day_strip(tmp_path):
    newsroom = Newsroom(tmp_path)
    newsroom.run(RUN_AT)
    config = newsroom.config
    studio = create_studio(lambda: config, OutboxTransport(config)).test_client()
    page = studio.get("/", query_string={"now": "2026-11-02T07:30Z"}).get_data(as_text=True)
    assert '<h2 id="strip-title">The day, per time zone</h2>' in page
    assert "Europe/London: 07:00 local sent (1 readers)" in page
