"""How long a slot takes to read its stories' lifts after a day of N events, and what keeping the
click summaries costs while processing them.

    python benchmarks/lift.py                       # 1,000,000 readers, 4,000,000 events
    python benchmarks/lift.py --readers 100000 --history-days 27

Makes a fresh database in a temporary folder: a day of `daily` in 24 time zones (a slot every
hour) times 4 topic sets, 96 editions of 13 stories each from a pool of 80, sent to N readers
(plain SQL, and the ledger's per-edition send counts). Each reader gets four events, as
SendGrid posts them: processed, delivered, an open, and either a click on one of their
email's stories (a quarter of readers, at a time spread over the day, more often on the
first stories), a scanner's click seconds after delivery (one in fifty), or a second open.
The bodies are stored as the webhook stores them and processed by `events.process_pending`
(timed: events per second, with the summaries kept). `--history-days` earlier days of the
same shape are added as summaries alone (editions, send counts, hourly click sums), since
the expected click-through per position is learned from them. Then
`edition.lift.story_lifts` runs at each of the day's and the next day's 24 slots and prints
the slowest and the median. Run by hand; nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from digest.clock import to_db  # noqa: E402
from digest.config import NewsletterConfig  # noqa: E402
from digest.edition.lift import story_lifts  # noqa: E402
from digest.feedback.events import process_pending, store_post  # noqa: E402
from digest.store import open_db  # noqa: E402

from sendgrid_server import event_bodies  # noqa: E402

DAY = datetime(2026, 11, 26, tzinfo=UTC)
ZONES = 24
TOPIC_SETS = 4
STORIES_PER_EDITION = 13
POOL = 80
CHUNK_READERS = 2000
NEWSLETTER = NewsletterConfig(name="daily")
# An edition's HTML is tens of kilobytes: lift must never read past it.
HTML = "<p>" + "x" * 60_000 + "</p>"


def edition_plan(day: int, rng: random.Random) -> list[tuple[int, datetime, list[int]]]:
    """The editions of one day (day 0 is the measured one): id, slot and stories."""
    start = DAY + timedelta(days=day)
    pool = list(range(1 + POOL * (day + 1000), 1 + POOL * (day + 1001)))
    plan = []
    for zone in range(ZONES):
        for topic in range(TOPIC_SETS):
            edition_id = (day + 1000) * 1000 + zone * TOPIC_SETS + topic
            plan.append(
                (edition_id, start + timedelta(hours=zone), rng.sample(pool, STORIES_PER_EDITION))
            )
    return plan


def make_database(path: Path, readers: int, history_days: int, rng: random.Random) -> list:
    db = open_db(path)
    stamp = to_db(DAY)
    today = edition_plan(0, rng)
    with db.atomic():
        for day in [*range(-history_days, 0), 0]:
            plan = today if day == 0 else edition_plan(day, rng)
            db.conn.executemany(
                """INSERT INTO editions (id, newsletter, slot_at, variant, topics, timezone,
                   subject, html, text, story_ids, created_at)
                   VALUES (?, 'daily', ?, ?, '', ?, 'Today', ?, '', ?, ?)""",
                [
                    (
                        e,
                        to_db(slot),
                        f"v{e % 1000}",
                        f"Zone/{e % 1000 // TOPIC_SETS}",
                        HTML,
                        json.dumps(ids),
                        stamp,
                    )
                    for e, slot, ids in plan
                ],
            )
            db.conn.executemany(
                """INSERT INTO edition_lineups (edition_id, newsletter, slot_at, story_ids, stories)
                   VALUES (?, 'daily', ?, ?, ?)""",
                [(e, to_db(slot), json.dumps(ids), len(ids)) for e, slot, ids in plan],
            )
            if day == 0:
                continue
            per_edition = readers // len(plan)
            db.conn.executemany(
                "INSERT INTO edition_sends (edition_id, readers) VALUES (?, ?)",
                [(e, per_edition) for e, _, _ in plan],
            )
            hours = [
                (e, slot, story, position, int(slot.timestamp()) // 3600 + h)
                for e, slot, ids in plan
                for position, story in enumerate(ids, 1)
                for h in range(8)
            ]
            clicks = [rng.randint(0, per_edition // (40 * row[3])) for row in hours]
            db.conn.executemany(
                """INSERT INTO story_click_hours (edition_id, story_id, hour, human, machine)
                   VALUES (?, ?, ?, ?, ?)""",
                [
                    (e, story, hour, n, n // 20)
                    for (e, _, story, _, hour), n in zip(hours, clicks, strict=True)
                ],
            )
            db.conn.executemany(
                """INSERT INTO position_click_hours (newsletter, slot_day, position, hour, human)
                   VALUES ('daily', ?, ?, ?, ?)
                   ON CONFLICT DO UPDATE SET human = human + excluded.human""",
                [
                    (int(slot.timestamp()) // 86400, position, hour, n)
                    for (_, slot, _, position, hour), n in zip(hours, clicks, strict=True)
                ],
            )
            db.conn.executemany(
                "INSERT INTO reach_hours (edition_id, hour, lost) VALUES (?, ?, ?)",
                [
                    (e, int(slot.timestamp()) // 3600 + h, per_edition // 200)
                    for e, slot, _ in plan
                    for h in range(3)
                ],
            )
        db.execute(
            """WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
               INSERT INTO deliveries (id, edition_id, subscriber_id, email, status, batch_key,
               attempts, created_at, updated_at, sent_at)
               SELECT i, 0, i, 'reader' || i || '@example.com', 'sent', 'b' || (i / 1000), 1,
                      ?, ?, ? FROM n""",
            [readers, stamp, stamp, stamp],
        )
        # Reader i reads edition i mod 96 of the day.
        editions = [e for e, _, _ in today]
        db.execute("CREATE TEMP TABLE plan (n INTEGER PRIMARY KEY, edition_id INTEGER NOT NULL)")
        db.conn.executemany("INSERT INTO plan VALUES (?, ?)", list(enumerate(editions)))
        db.execute(
            f"""UPDATE deliveries SET edition_id =
                (SELECT edition_id FROM plan WHERE n = deliveries.id % {len(editions)})"""
        )
        db.execute(
            """INSERT INTO edition_sends (edition_id, readers)
               SELECT edition_id, COUNT(*) FROM deliveries GROUP BY edition_id"""
        )
    db.close()
    return today


def reader_events(reader: int, edition: tuple[int, datetime, list[int]]) -> list[dict]:
    edition_id, slot, stories = edition
    at = int(slot.timestamp()) + 10
    common = {
        "email": f"reader{reader}@example.com",
        "sg_message_id": f"b{reader // 1000}.filterdrecv-{reader % 1000}",
        "digest_edition": str(edition_id),
        "digest_delivery": str(reader),
    }
    kind = reader % 100
    if kind < 25:
        # Position k is clicked about 1/k as often as the first.
        position = min(int(1 / (1 - (reader * 7919 % 1000) / 1000.1)), STORIES_PER_EDITION)
        url = f"https://news.example.com/s?digest_story={stories[position - 1]}"
        last = {"event": "click", "url": url, "timestamp": at + 1800 + reader % 36000}
    elif kind < 27:
        url = f"https://news.example.com/s?digest_story={stories[reader % 5]}"
        last = {"event": "click", "url": url, "timestamp": at + 4}
    else:
        last = {"event": "open", "sg_machine_open": False, "timestamp": at + 7200}
    events = [
        {"event": "processed", "timestamp": at},
        {"event": "delivered", "timestamp": at + 2},
        {"event": "open", "sg_machine_open": reader % 3 == 0, "timestamp": at + 600},
        last,
    ]
    return [{**common, **e, "sg_event_id": f"e{reader}-{n}"} for n, e in enumerate(events)]


def bodies(readers: int, today: list) -> Iterator[bytes]:
    for start in range(1, readers + 1, CHUNK_READERS):
        stop = min(start + CHUNK_READERS, readers + 1)
        yield from event_bodies(
            [e for r in range(start, stop) for e in reader_events(r, today[r % len(today)])]
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=1_000_000)
    parser.add_argument("--history-days", type=int, default=27)
    args = parser.parse_args()
    rng = random.Random(22)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "digest.db"
        started = time.perf_counter()
        today = make_database(path, args.readers, args.history_days, rng)
        db = open_db(path)
        received_at = DAY + timedelta(days=1, hours=1)
        posts = 0
        for body in bodies(args.readers, today):
            store_post(db, body, {}, received_at)
            posts += 1
        built = time.perf_counter() - started
        started = time.perf_counter()
        report = process_pending(db)
        processed = time.perf_counter() - started
        db.execute("ANALYZE")
        rows = {
            table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("events", "story_clicks", "story_click_hours")
        }
        machine = db.execute(
            "SELECT COUNT(*) FROM story_clicks WHERE machine_at IS NOT NULL"
        ).fetchone()[0]
        # Each zone's slot of the day, then of the next day: the window holds up to a day.
        timings = []
        stories = []
        for day in (0, 1):
            for zone in range(ZONES):
                now = DAY + timedelta(days=day, hours=zone)
                started = time.perf_counter()
                lifts = story_lifts(db, NEWSLETTER, now)
                timings.append(time.perf_counter() - started)
                stories.append(len(lifts))
        db.close()
    print(f"readers            {args.readers:,}, {len(today)} editions in {ZONES} zones")
    print(f"events             {report.events:,} in {posts:,} posts ({report.new_events:,} new)")
    print(f"history            {args.history_days} earlier days as summaries")
    print(f"set up             {built:.1f} s")
    print(f"processed          {processed:.1f} s = {report.events / processed:,.0f} events/s")
    print(
        f"summaries          {rows['story_clicks']:,} reader-story rows "
        f"({machine:,} machines'), {rows['story_click_hours']:,} hourly rows"
    )
    print(f"stories with lift  up to {max(stories)} in a slot's window")
    print(
        f"story_lifts        slowest {max(timings) * 1000:.0f} ms, median "
        f"{statistics.median(timings) * 1000:.0f} ms over {len(timings)} slots (the day's "
        "and the next day's)"
    )


if __name__ == "__main__":
    main()
