"""`digest run` through simulated days: one digest a day at 07:00 local, catch-up and misses.

Four readers (London, Kolkata, New York, Tokyo) and a feed that publishes a story every two
hours. The week of 29 October 2026 includes New York leaving daylight-saving time on
1 November. Runs call the library function with `now` stepped through the days, as cron
would call `digest run --now`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.config import Config
from digest.delivery.transports import BatchTransport
from digest.delivery.transports.outbox import OutboxTransport
from digest.edition.render import Renderer
from digest.errors import TransportAuthError
from digest.readers.subscribers import add_subscriber
from digest.run import RunReport, run_due
from digest.store import open_db

from helpers import make_config

READERS = {
    "london@example.com": "Europe/London",
    "kolkata@example.com": "Asia/Kolkata",
    "newyork@example.com": "America/New_York",
    "tokyo@example.com": "Asia/Tokyo",
}
WEEK_START = datetime(2026, 10, 29, 0, 0, tzinfo=UTC)
WEEK_END = datetime(2026, 11, 5, 0, 0, tzinfo=UTC)
FIVE_MINUTES = timedelta(minutes=5)
CATEGORIES = ("world", "business", "science", "sport", "culture")
FEED_HOURS = 6


def days(first: date, count: int) -> set[date]:
    return {first + timedelta(days=n) for n in range(count)}


# The first run, at midnight UTC on 29 October, finds Tokyo's 29 October 07:00 (22:00 UTC the
# evening before) two hours old, within grace; the last run, at 23:55 UTC on 4 November, comes
# after Tokyo's 5 November 07:00. Everyone else gets 29 October to 4 November.
EXPECTED_DAYS = {
    "london@example.com": days(date(2026, 10, 29), 7),
    "kolkata@example.com": days(date(2026, 10, 29), 7),
    "newyork@example.com": days(date(2026, 10, 29), 7),
    "tokyo@example.com": days(date(2026, 10, 29), 8),
}


class Feed:
    """A feed file that publishes a story at 50 past every odd hour (UTC) and, like a real
    feed, lists only its latest stories (the last FEED_HOURS); `quiet` spans publish nothing."""

    def __init__(self, path: Path, quiet: tuple[tuple[datetime, datetime], ...] = ()):
        self.path = path
        self.quiet = quiet
        self.listed: list[datetime] | None = None

    def stories_listed_at(self, now: datetime) -> list[datetime]:
        latest = now.replace(minute=50, second=0, microsecond=0)
        if latest > now:
            latest -= timedelta(hours=1)
        if latest.hour % 2 == 0:
            latest -= timedelta(hours=1)
        times = [latest - timedelta(hours=2 * n) for n in range(FEED_HOURS // 2)]
        return [t for t in reversed(times) if not any(a <= t < b for a, b in self.quiet)]

    def write(self, now: datetime) -> None:
        listed = self.stories_listed_at(now)
        if listed == self.listed:
            return
        lines = [
            json.dumps(
                {
                    "url": f"https://news.test/{t:%Y%m%dT%H%M}",
                    "title": f"News of {t:%d %B %H:%M} UTC",
                    "summary": "What happened.",
                    "category": CATEGORIES[t.hour // 2 % len(CATEGORIES)],
                    "published_at": t.isoformat(),
                }
            )
            for t in listed
        ]
        self.path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.listed = listed


@dataclass(frozen=True)
class Delivered:
    email: str
    local_date: date
    local_time: time
    slot_at: datetime
    story_urls: tuple[str, ...]
    # The stories linked under "Also read": context, which may repeat (docs: variants).
    also_read_urls: tuple[str, ...] = ()


class Newsroom:
    """A project folder: config with the feed as its source, four readers, the database."""

    def __init__(self, folder: Path, quiet: tuple[tuple[datetime, datetime], ...] = ()):
        folder.mkdir(parents=True, exist_ok=True)
        self.feed = Feed(folder / "feed.jsonl", quiet)
        # A two-day window, so each day's window overlaps the day before: no-repeat must hold.
        self.config: Config = make_config(
            folder,
            {
                "timezone": "Europe/London",
                "grace_hours": 6,
                "window_hours": 48,
                "sources": [str(self.feed.path)],
            },
        )
        self.db = open_db(self.config.db_path)
        # One renderer for all the runs, as a long-lived process would keep: compiling the
        # templates again for each run would only slow the simulation down.
        self.renderer = Renderer(self.config.templates_dir)
        for email, zone in READERS.items():
            add_subscriber(self.db, email, timezone=zone)

    def run(self, now: datetime, **options) -> RunReport:
        self.feed.write(now)
        options.setdefault("transport", OutboxTransport(self.config))
        return run_due(self.db, self.config, now, renderer=self.renderer, **options)

    def run_every(
        self,
        step: timedelta,
        start: datetime,
        end: datetime,
        down: tuple[datetime, datetime] | None = None,
    ) -> list[RunReport]:
        """A run at start, start + step, ... before end, except while `down`."""
        reports = []
        now = start
        while now < end:
            if down is None or not down[0] <= now < down[1]:
                reports.append(self.run(now))
            now += step
        return reports

    def delivered(self) -> list[Delivered]:
        rows = self.db.execute(
            """SELECT d.email, e.slot_at, e.timezone, e.story_ids, e.text
               FROM deliveries d JOIN editions e ON e.id = d.edition_id
               WHERE d.status = 'sent' ORDER BY e.slot_at, d.email"""
        ).fetchall()
        urls = dict(self.db.execute("SELECT id, url FROM stories").fetchall())
        delivered = []
        for email, slot_at, zone, story_ids, text in rows:
            at = datetime.fromisoformat(slot_at)
            local = at.astimezone(ZoneInfo(zone))
            stories = tuple(sorted(urls[i] for i in json.loads(story_ids)))
            also = tuple(u.split("?")[0] for u in re.findall(r"Also read: .*\r?\n(\S+)", text))
            delivered.append(Delivered(email, local.date(), local.time(), at, stories, also))
        return delivered

    def slots(self) -> list[tuple[str, datetime, str, str]]:
        rows = self.db.execute(
            "SELECT timezone, slot_at, status, note FROM slots ORDER BY slot_at, timezone"
        ).fetchall()
        return [(zone, datetime.fromisoformat(at), status, note) for zone, at, status, note in rows]

    def eml_files(self) -> list[Path]:
        return sorted(self.config.outbox_dir.rglob("*.eml"))


def slot_lines(report: RunReport) -> list[str]:
    """The report's lines about slots, without the feed's ingest lines."""
    return [line for line in report.lines if not line.startswith("ingest ")]


def days_by_reader(delivered: list[Delivered]) -> dict[str, list[date]]:
    result: dict[str, list[date]] = {}
    for d in delivered:
        result.setdefault(d.email, []).append(d.local_date)
    return result


@pytest.fixture(scope="module")
def week_every_five_minutes(tmp_path_factory) -> Newsroom:
    newsroom = Newsroom(tmp_path_factory.mktemp("five-minutes"))
    newsroom.run_every(FIVE_MINUTES, WEEK_START, WEEK_END)
    return newsroom


@pytest.fixture(scope="module")
def week_every_hour(tmp_path_factory) -> Newsroom:
    newsroom = Newsroom(tmp_path_factory.mktemp("hourly"))
    newsroom.run_every(timedelta(hours=1), WEEK_START, WEEK_END)
    return newsroom


@pytest.mark.slow
def test_each_reader_gets_exactly_one_digest_for_each_local_day(week_every_five_minutes):
    by_reader = days_by_reader(week_every_five_minutes.delivered())
    assert {email: sorted(set(dates)) for email, dates in by_reader.items()} == {
        email: sorted(dates) for email, dates in EXPECTED_DAYS.items()
    }
    assert all(len(dates) == len(set(dates)) for dates in by_reader.values())


def test_each_digest_is_one_eml_in_the_outbox(week_every_five_minutes):
    names = [path.name for path in week_every_five_minutes.eml_files()]
    assert sorted(names) == sorted(
        f"{email}.eml" for email, dates in EXPECTED_DAYS.items() for _ in dates
    )


def test_every_digest_is_the_0700_local_slot(week_every_five_minutes):
    assert {d.local_time for d in week_every_five_minutes.delivered()} == {time(7, 0)}


def test_new_york_stays_at_0700_local_across_the_end_of_daylight_saving(
    week_every_five_minutes,
):
    new_york = {
        d.local_date: d.slot_at
        for d in week_every_five_minutes.delivered()
        if d.email == "newyork@example.com"
    }
    assert new_york[date(2026, 10, 31)] == datetime(2026, 10, 31, 11, 0, tzinfo=UTC)  # EDT
    assert new_york[date(2026, 11, 1)] == datetime(2026, 11, 1, 12, 0, tzinfo=UTC)  # EST
    assert new_york[date(2026, 11, 4)] == datetime(2026, 11, 4, 12, 0, tzinfo=UTC)


def test_no_reader_gets_a_story_twice_across_the_week(week_every_five_minutes):
    for email in READERS:
        urls = [
            url
            for d in week_every_five_minutes.delivered()
            if d.email == email
            for url in d.story_urls
            if url not in d.also_read_urls
        ]
        assert urls, email
        assert len(urls) == len(set(urls)), email


def test_each_digest_carries_only_stories_published_by_its_slot(week_every_five_minutes):
    for d in week_every_five_minutes.delivered():
        for url in d.story_urls:
            published = datetime.strptime(url.rsplit("/", 1)[1], "%Y%m%dT%H%M")
            assert published.replace(tzinfo=UTC) <= d.slot_at, (d.email, d.local_date, url)


def test_every_slot_of_the_week_is_recorded_once_as_sent(week_every_five_minutes):
    slots = week_every_five_minutes.slots()
    assert {status for _, _, status, _ in slots} == {"sent"}
    assert len(slots) == sum(len(dates) for dates in EXPECTED_DAYS.values())


@pytest.mark.slow
def test_runs_every_five_minutes_and_every_hour_deliver_the_same(
    week_every_five_minutes, week_every_hour
):
    def deliveries(newsroom: Newsroom) -> set[tuple[str, date, tuple[str, ...]]]:
        return {(d.email, d.local_date, d.story_urls) for d in newsroom.delivered()}

    assert deliveries(week_every_hour) == deliveries(week_every_five_minutes)


def test_a_first_run_sends_the_latest_slots_within_grace(tmp_path):
    newsroom = Newsroom(tmp_path)
    report = newsroom.run(datetime(2026, 11, 2, 7, 0, tzinfo=UTC))
    # Kolkata's 07:00 was 01:30 UTC, within grace, but the feed's stories all came after it;
    # New York's and Tokyo's latest slots are past grace.
    assert report.lines == [
        "ingest " + str(newsroom.feed.path) + ": 3 added, 0 updated, 0 unchanged, 0 skipped",
        "daily Asia/Kolkata 2026-11-02 07:00 (2026-11-02 01:30 UTC): skipped: no new stories",
        "daily Europe/London 2026-11-02 07:00 (2026-11-02 07:00 UTC): "
        "sent 1, failed 0, skipped 0, unknown 0 in 1 edition(s)",
    ]


def test_a_repeated_run_does_nothing(tmp_path):
    newsroom = Newsroom(tmp_path)
    newsroom.run(datetime(2026, 11, 2, 7, 0, tzinfo=UTC))
    again = newsroom.run(datetime(2026, 11, 2, 7, 0, tzinfo=UTC))
    later = newsroom.run(datetime(2026, 11, 2, 7, 5, tzinfo=UTC))
    assert (again.lines, later.lines) == (["nothing due"], ["nothing due"])
    assert [p.name for p in newsroom.eml_files()] == ["london@example.com.eml"]


def test_a_three_hour_outage_sends_the_slot_when_runs_resume(tmp_path):
    newsroom = Newsroom(tmp_path)
    day = datetime(2026, 11, 2, tzinfo=UTC)
    down = (day + timedelta(hours=6), day + timedelta(hours=9))
    newsroom.run_every(FIVE_MINUTES, day - timedelta(hours=17), day)  # yesterday ran fine
    reports = newsroom.run_every(FIVE_MINUTES, day, day + timedelta(hours=12), down)
    london = [d for d in newsroom.delivered() if d.email == "london@example.com"]
    assert [(d.local_date, d.local_time) for d in london] == [
        (date(2026, 11, 1), time(7, 0)),
        (date(2026, 11, 2), time(7, 0)),
    ]
    first_after = reports[[r.now for r in reports].index(down[1])]
    assert slot_lines(first_after) == [
        "daily Europe/London 2026-11-02 07:00 (2026-11-02 07:00 UTC): "
        "sent 1, failed 0, skipped 0, unknown 0 in 1 edition(s)"
    ]


def test_a_ten_hour_outage_records_the_slot_missed_and_sends_nothing_late(tmp_path):
    newsroom = Newsroom(tmp_path)
    day = datetime(2026, 11, 2, tzinfo=UTC)
    newsroom.run_every(FIVE_MINUTES, day - timedelta(hours=17), day)  # yesterday ran fine
    down = (day + timedelta(hours=5), day + timedelta(hours=15))
    reports = newsroom.run_every(FIVE_MINUTES, day, day + timedelta(hours=16), down)
    first_after = reports[[r.now for r in reports].index(down[1])]
    # New York's 07:00 (12:00 UTC) is three hours old: still within grace.
    assert slot_lines(first_after) == [
        "daily Europe/London 2026-11-02 07:00 (2026-11-02 07:00 UTC): "
        "missed, 8h late, past the 6h grace; not sent",
        "daily America/New_York 2026-11-02 07:00 (2026-11-02 12:00 UTC): "
        "sent 1, failed 0, skipped 0, unknown 0 in 1 edition(s)",
    ]
    assert ("Europe/London", day + timedelta(hours=7), "missed", "8h late, past the 6h grace") in (
        newsroom.slots()
    )
    london = [d.local_date for d in newsroom.delivered() if d.email == "london@example.com"]
    assert london == [date(2026, 11, 1)]


def test_the_outage_that_missed_a_slot_does_not_stop_the_next_day(tmp_path):
    newsroom = Newsroom(tmp_path)
    day = datetime(2026, 11, 2, tzinfo=UTC)
    newsroom.run(day - timedelta(hours=17))  # London's 1 November slot, sent on time
    newsroom.run_every(FIVE_MINUTES, day + timedelta(hours=15), day + timedelta(hours=32))
    london = [d.local_date for d in newsroom.delivered() if d.email == "london@example.com"]
    assert london == [date(2026, 11, 1), date(2026, 11, 3)]


def test_a_day_without_new_stories_sends_nothing_and_says_so(tmp_path):
    day = datetime(2026, 11, 2, tzinfo=UTC)
    newsroom = Newsroom(tmp_path, quiet=((day - timedelta(days=1), day + timedelta(days=1)),))
    reports = newsroom.run_every(FIVE_MINUTES, day, day + timedelta(hours=13))
    assert newsroom.eml_files() == []
    assert newsroom.db.execute("SELECT COUNT(*) FROM editions").fetchone()[0] == 0
    lines = [line for r in reports for line in slot_lines(r) if line != "nothing due"]
    assert lines == [
        "daily Asia/Tokyo 2026-11-02 07:00 (2026-11-01 22:00 UTC): skipped: no new stories",
        "daily Asia/Kolkata 2026-11-02 07:00 (2026-11-02 01:30 UTC): skipped: no new stories",
        "daily Europe/London 2026-11-02 07:00 (2026-11-02 07:00 UTC): skipped: no new stories",
        "daily America/New_York 2026-11-02 07:00 (2026-11-02 12:00 UTC): skipped: no new stories",
    ]


def test_a_day_without_new_stories_is_recorded_skipped_and_not_tried_again(tmp_path):
    day = datetime(2026, 11, 2, tzinfo=UTC)
    newsroom = Newsroom(tmp_path, quiet=((day - timedelta(days=1), day + timedelta(days=1)),))
    reports = newsroom.run_every(FIVE_MINUTES, day + timedelta(hours=7), day + timedelta(hours=8))
    assert [s for s in newsroom.slots() if s[0] == "Europe/London"] == [
        ("Europe/London", day + timedelta(hours=7), "skipped", "no new stories")
    ]
    assert {tuple(slot_lines(r)) for r in reports[1:]} == {("nothing due",)}


def test_a_failing_source_is_reported_and_the_run_goes_on(tmp_path):
    newsroom = Newsroom(tmp_path)
    newsroom.config = make_config(
        tmp_path,
        {"sources": [str(tmp_path / "missing.xml"), str(newsroom.feed.path)]},
    )
    report = newsroom.run(datetime(2026, 11, 2, 7, 0, tzinfo=UTC))
    assert report.failed
    assert report.lines[0].startswith(f"ingest {tmp_path / 'missing.xml'}: FAILED")
    assert report.lines[1].startswith(f"ingest {newsroom.feed.path}: 3 added")
    assert "sent 1, failed 0" in report.lines[-1]


def test_an_unreadable_feed_item_is_skipped_and_the_run_goes_on_to_send(tmp_path):
    newsroom = Newsroom(tmp_path)
    overflow = tmp_path / "overflow.json"
    overflow.write_text(
        json.dumps(
            {
                "version": "https://jsonfeed.org/version/1.1",
                "items": [
                    {
                        "id": "far",
                        "url": "https://news.test/far",
                        "title": "From the end of time",
                        "date_published": "9999-12-31T23:59:59-14:00",
                    }
                ],
            }
        )
    )
    newsroom.config = make_config(tmp_path, {"sources": [str(overflow), str(newsroom.feed.path)]})

    report = newsroom.run(datetime(2026, 11, 2, 7, 0, tzinfo=UTC))

    assert report.lines[:2] == [
        f"ingest {overflow}: 0 added, 0 updated, 0 unchanged, 1 skipped",
        "  skipped: item 1 ('From the end of time'): date_published "
        "'9999-12-31T23:59:59-14:00' is out of range; give a time between 1970 and 9999.",
    ]
    assert report.lines[2].startswith(f"ingest {newsroom.feed.path}: 3 added")
    assert "sent 1, failed 0" in report.lines[-1]
    assert not report.failed
    assert newsroom.db.execute("SELECT count(*) FROM runs").fetchone()[0] == 1


def test_a_source_the_database_refuses_is_reported_and_the_run_goes_on_to_send(tmp_path):
    newsroom = Newsroom(tmp_path)
    refused = tmp_path / "refused.jsonl"
    refused.write_text(
        json.dumps(
            {"url": "https://news.test/r", "title": "Refused", "published_at": "2026-11-02T06:00Z"}
        )
    )
    newsroom.db.execute(
        """CREATE TRIGGER refuse BEFORE INSERT ON stories WHEN NEW.title = 'Refused'
           BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"""
    )
    newsroom.config = make_config(tmp_path, {"sources": [str(refused), str(newsroom.feed.path)]})

    report = newsroom.run(datetime(2026, 11, 2, 7, 0, tzinfo=UTC))

    assert report.failed
    assert report.lines[0].startswith(f"ingest {refused}: FAILED: unexpected IntegrityError (")
    assert report.lines[1].startswith(f"ingest {newsroom.feed.path}: 3 added")
    assert "sent 1, failed 0" in report.lines[-1]


class RefusingTransport(BatchTransport):
    """A provider that refuses our key, as SendGrid does with HTTP 401."""

    batch_size = 100

    def send_batch(self, edition, batch) -> str:
        raise TransportAuthError("The provider refused the API key (HTTP 401).")


def test_a_slot_that_failed_is_tried_again_by_the_next_run_within_grace(tmp_path):
    newsroom = Newsroom(tmp_path)
    slot = datetime(2026, 11, 2, 7, 0, tzinfo=UTC)
    failed = newsroom.run(slot, transport=RefusingTransport())
    assert failed.failed
    assert "FAILED: The provider refused the API key" in failed.lines[-1]
    retried = newsroom.run(slot + FIVE_MINUTES)
    assert not retried.failed
    assert "sent 1, failed 0" in retried.lines[-1]
    assert [p.name for p in newsroom.eml_files()] == ["london@example.com.eml"]


def test_a_slot_that_failed_is_left_alone_once_past_grace(tmp_path):
    newsroom = Newsroom(tmp_path)
    slot = datetime(2026, 11, 2, 7, 0, tzinfo=UTC)
    newsroom.run(slot, transport=RefusingTransport())
    later = newsroom.run(slot + timedelta(hours=6, minutes=5))
    [london] = [line for line in later.lines if "Europe/London" in line]
    assert london.endswith(
        "failed past its grace; 1 readers still queued are skipped, never sent late"
    )
    assert [p.name for p in newsroom.eml_files()] == ["newyork@example.com.eml"]
