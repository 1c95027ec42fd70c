"""Readers' clicks move the next lineup, end to end: Tokyo's edition goes out, its readers' clicks
come back as signed posts through the real webhook, and London's lineup nine hours later follows
the stories Tokyo's readers read more than their positions predicted, but not the scanners'."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.clock import to_db
from digest.config import parse_config
from digest.delivery.send import send_newsletter
from digest.delivery.transports.outbox import OutboxTransport
from digest.edition.build import slot_editions
from digest.edition.lift import story_lifts
from digest.edition.render import add_story_id
from digest.feedback.events import pending_posts, process_pending
from digest.feedback.figures import hours_since_send, story_positions, zone_funnels
from digest.feedback.report import edition_report, link_clicks, report_lines
from digest.feedback.webhook import KEYS_VARIABLE, SIGNATURE_HEADER, TIMESTAMP_HEADER
from digest.lineup import lineup
from digest.preview import variant_selection, variant_target
from digest.readers.subscribers import add_subscriber
from digest.store import migrations
from digest.studio import create_studio
from digest.web import create_app

from helpers import add_stories, config_data, story, write_config
from sendgrid_server import make_webhook_key, sign_event_post

# 07:00 in Tokyo, then 07:00 in London nine hours later: the same day's edition.
TOKYO = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
LONDON = TOKYO + timedelta(hours=9)
TOKYO_READERS = 20
WEBHOOK = "/webhooks/sendgrid"
# The editor's order A > B > C > D; D is the newest story, so the first of the recent posts.
SCORES = {"A": 3, "B": 2, "C": 0.3, "D": 0, "E": 0, "F": 0}
AGES = {"A": 3, "B": 3, "C": 3, "D": 1, "E": 2, "F": 2.5}


def make(tmp_path, **engagement):
    newsletter = {
        "top_stories": 3,
        "recent_posts": 4,
        "per_category": 3,
        "also_read": False,
        "engagement": {"min_impressions": 10} | engagement,
    }
    return parse_config(config_data(newsletter), tmp_path / "digest.toml", env={})


@pytest.fixture
def keys():
    return make_webhook_key()


@pytest.fixture
def newsroom(db):
    """Six stories published before Tokyo's slot, twenty readers in Tokyo and five in London."""
    ids = add_stories(
        db,
        *(
            story(AGES[name], at=TOKYO, title=f"Story {name}", score=SCORES[name])
            for name in SCORES
        ),
    )
    for n in range(TOKYO_READERS):
        add_subscriber(db, f"tokyo{n}@example.com", timezone="Asia/Tokyo")
    for n in range(5):
        add_subscriber(db, f"london{n}@example.com", timezone="Europe/London")
    return dict(zip(SCORES, ids, strict=True))


def send_zone(db, config, zone: str, slot: datetime):
    send_newsletter(
        db,
        config,
        None,
        slot + timedelta(minutes=1),
        transport=OutboxTransport(config),
        timezone=zone,
    )
    return slot_editions(db, "daily", slot, zone)


def deliveries(db, edition_id: int) -> list[tuple[int, str]]:
    return db.execute(
        "SELECT id, email FROM deliveries WHERE edition_id = ? ORDER BY id", [edition_id]
    ).fetchall()


def event(delivery: tuple[int, str], edition_id: int, name: str, at: datetime, **fields) -> dict:
    delivery_id, email = delivery
    return {
        "email": email,
        "event": name,
        "timestamp": int(at.timestamp()),
        "sg_event_id": f"{name}-{delivery_id}-{int(at.timestamp())}-{fields.get('url', '')}",
        "sg_message_id": f"msg{delivery_id}.filter",
        "digest_edition": str(edition_id),
        "digest_delivery": str(delivery_id),
    } | fields


def post_signed(db, config, keys, events: list[dict]) -> None:
    """Post the events signed, through the real webhook route, and process them."""
    private, public = keys
    client = create_app(config, OutboxTransport(config), env={KEYS_VARIABLE: public}).test_client()
    body = json.dumps(events).encode()
    timestamp = str(int(time.time()))
    response = client.post(
        WEBHOOK,
        data=body,
        content_type="application/json",
        headers={
            SIGNATURE_HEADER: sign_event_post(private, timestamp, body),
            TIMESTAMP_HEADER: timestamp,
        },
    )
    response.close()
    assert response.status_code == 204
    process_pending(db)


def link(db, story_id: int) -> str:
    url = db.execute("SELECT url FROM stories WHERE id = ?", [story_id]).fetchone()[0]
    return add_story_id(url, story_id)


def delivered_all(edition_id: int, readers) -> list[dict]:
    return [event(d, edition_id, "delivered", TOKYO + timedelta(minutes=2)) for d in readers]


def top_of(edition) -> list[int]:
    return list(edition.story_ids[:3])


def tokyo_day(db, config, keys, newsroom, clicks) -> None:
    """Tokyo's edition sent, delivered, and the clicks `clicks(readers, edition)` returns."""
    (edition,) = send_zone(db, config, "Asia/Tokyo", TOKYO)
    assert top_of(edition) == [newsroom["A"], newsroom["B"], newsroom["C"]]
    assert edition.story_ids[3] == newsroom["D"]
    readers = deliveries(db, edition.saved_id)
    assert len(readers) == TOKYO_READERS
    post_signed(db, config, keys, delivered_all(edition.saved_id, readers))
    post_signed(db, config, keys, clicks(readers, edition.saved_id))
    assert not pending_posts(db)


def people_read_d(db, newsroom):
    def clicks(readers, edition_id):
        # Six of twenty (30%), half an hour after delivery; one of them clicks it 500 times.
        at = TOKYO + timedelta(minutes=32)
        url = link(db, newsroom["D"])
        made = [event(d, edition_id, "click", at, url=url) for d in readers[:6]]
        made += [
            event(readers[0], edition_id, "click", at + timedelta(seconds=n), url=url)
            for n in range(1, 500)
        ]
        return made

    return clicks


def test_a_story_tokyo_read_rises_in_londons_lineup_the_same_day(tmp_path, db, keys, newsroom):
    config = make(tmp_path)
    tokyo_day(db, config, keys, newsroom, people_read_d(db, newsroom))
    (edition,) = send_zone(db, config, "Europe/London", LONDON)
    assert newsroom["D"] in top_of(edition)
    assert newsroom["C"] not in top_of(edition)
    # The studio's lineup shows why, and preview agrees with the send at the same moment.
    target = variant_target(db, config, "daily", LONDON, timezone="Europe/London")
    rows = {row.story.id: row for row in lineup(db, target)}
    d = rows[newsroom["D"]]
    assert (d.engagement.impressions, d.engagement.human_clicks) == (TOKYO_READERS, 6)
    assert d.engagement.lift > 1 and d.factor == d.engagement.lift
    assert d.order < d.editor_order and d.moved.startswith("up")


def test_preview_and_send_agree_for_the_same_moment(tmp_path, db, keys, newsroom):
    config = make(tmp_path)
    tokyo_day(db, config, keys, newsroom, people_read_d(db, newsroom))
    target = variant_target(db, config, "daily", LONDON, timezone="Europe/London")
    previewed = variant_selection(db, target).story_ids
    (edition,) = send_zone(db, config, "Europe/London", LONDON)
    assert list(edition.story_ids) == previewed


def test_clicks_after_the_selections_moment_do_not_count(tmp_path, db, keys, newsroom):
    config = make(tmp_path)

    def late(readers, edition_id):
        url = link(db, newsroom["D"])
        return [
            event(d, edition_id, "click", LONDON + timedelta(minutes=5), url=url)
            for d in readers[:6]
        ]

    tokyo_day(db, config, keys, newsroom, late)
    (edition,) = send_zone(db, config, "Europe/London", LONDON)
    assert top_of(edition) == [newsroom["A"], newsroom["B"], newsroom["C"]]


def test_a_story_clicked_only_by_link_scanners_does_not_rise(tmp_path, db, keys, newsroom):
    config = make(tmp_path)

    def scanners(readers, edition_id):
        delivered = TOKYO + timedelta(minutes=2)
        url = link(db, newsroom["D"])
        # Seconds after delivery (Safe Links), or before it (scanned before delivering) ...
        made = [
            event(d, edition_id, "click", delivered + timedelta(seconds=n % 4 - 1), url=url)
            for n, d in enumerate(readers[:10])
        ]
        # ... or an hour later, every link of the email within a minute (a sweep).
        later = delivered + timedelta(hours=1)
        for d in readers[10:16]:
            made += [
                event(d, edition_id, "click", later + timedelta(seconds=5 * n), url=link(db, sid))
                for n, sid in enumerate(newsroom.values())
            ]
        return made

    tokyo_day(db, config, keys, newsroom, scanners)
    (edition,) = send_zone(db, config, "Europe/London", LONDON)
    assert top_of(edition) == [newsroom["A"], newsroom["B"], newsroom["C"]]
    target = variant_target(db, config, "daily", LONDON, timezone="Europe/London")
    d = next(row for row in lineup(db, target) if row.story.id == newsroom["D"])
    assert (d.engagement.human_clicks, d.engagement.machine_clicks) == (0, 16)
    assert d.engagement.lift < 1


def test_with_weight_zero_the_lineup_is_the_editors_alone(tmp_path, db, keys, newsroom):
    config = make(tmp_path, weight=0)
    tokyo_day(db, config, keys, newsroom, people_read_d(db, newsroom))
    (edition,) = send_zone(db, config, "Europe/London", LONDON)
    assert top_of(edition) == [newsroom["A"], newsroom["B"], newsroom["C"]]
    target = variant_target(db, config, "daily", LONDON, timezone="Europe/London")
    assert all(
        row.factor == 1 and row.order == row.editor_order for row in lineup(db, target) if row.order
    )


def test_the_reports_impressions_add_up_against_the_ledger(tmp_path, db, keys, newsroom):
    config = make(tmp_path)
    tokyo_day(db, config, keys, newsroom, people_read_d(db, newsroom))
    (tokyo,) = slot_editions(db, "daily", TOKYO, "Asia/Tokyo")
    # Two readers who did not click: one bounced after delivery; a deferral reported late
    # does not undo the other's delivery.
    first, second = deliveries(db, tokyo.saved_id)[-2:]
    bounced = event(first, tokyo.saved_id, "bounce", TOKYO + timedelta(minutes=3), type="bounce")
    deferred = event(second, tokyo.saved_id, "deferred", TOKYO + timedelta(minutes=1))
    post_signed(db, config, keys, [bounced, deferred])
    send_zone(db, config, "Europe/London", LONDON)
    report = edition_report(db, config, "daily", "2026-11-26", LONDON + timedelta(hours=1))
    reached = dict(
        db.execute(
            """SELECT d.edition_id, COUNT(*) FROM deliveries d
               LEFT JOIN delivery_states s ON s.delivery_id = d.id
               WHERE d.status = 'sent'
                 AND (s.state IS NULL OR s.state IN ('delivered', 'complained'))
               GROUP BY d.edition_id"""
        ).fetchall()
    )
    carried = {e: json.loads(ids) for e, ids in db.execute("SELECT id, story_ids FROM editions")}
    for row in report["stories"]:
        expected = sum(n for e, n in reached.items() if row["story_id"] in carried[e])
        assert row["impressions"] == expected
    d = next(row for row in report["stories"] if row["story_id"] == newsroom["D"])
    # Six readers clicked it: the 500 clicks are one reader's.
    assert (d["impressions"], d["human_clicks"], d["machine_clicks"]) == (
        TOKYO_READERS - 1 + 5,
        6,
        0,
    )
    assert report["stories"][0]["story_id"] == newsroom["D"]
    (london,) = slot_editions(db, "daily", LONDON, "Europe/London")
    assert d["positions"] == sorted({4, london.story_ids.index(newsroom["D"]) + 1})


# Bad input: counted sensibly or set aside with a reason, never a crash.


def test_clicks_on_links_that_are_no_story_are_counted_under_their_link(
    tmp_path, db, keys, newsroom
):
    config = make(tmp_path)

    def others(readers, edition_id):
        at = TOKYO + timedelta(minutes=40)
        return [
            event(readers[0], edition_id, "click", at, url="https://news.test/archive?x=1"),
            event(readers[1], edition_id, "click", at, url="https://news.test/archive?x=2"),
            event(readers[1], edition_id, "click", at, url="https://news.test/archive?x=3"),
        ]

    tokyo_day(db, config, keys, newsroom, others)
    report = edition_report(db, config, "daily", "2026-11-26", TOKYO + timedelta(hours=1))
    assert report["links"] == [{"link": "news.test/archive", "readers": 2, "clicks": 3}]
    assert all(row["human_clicks"] == 0 for row in report["stories"])


def test_a_click_whose_query_string_lost_the_story_id_counts_for_the_story_by_its_url(
    tmp_path, db, keys, newsroom
):
    config = make(tmp_path)

    def changed(readers, edition_id):
        url = db.execute("SELECT url FROM stories WHERE id = ?", [newsroom["E"]]).fetchone()[0]
        at = TOKYO + timedelta(minutes=40)
        return [event(readers[0], edition_id, "click", at, url=f"{url}?utm_source=x#top")]

    tokyo_day(db, config, keys, newsroom, changed)
    report = edition_report(db, config, "daily", "2026-11-26", TOKYO + timedelta(hours=1))
    e = next(row for row in report["stories"] if row["story_id"] == newsroom["E"])
    assert e["human_clicks"] == 1 and report["links"] == []


def test_clicks_timestamped_in_the_future_or_before_the_slot_are_set_aside(
    tmp_path, db, keys, newsroom
):
    config = make(tmp_path)

    def impossible(readers, edition_id):
        url = link(db, newsroom["D"])
        return [
            event(readers[0], edition_id, "click", datetime(2100, 1, 1, tzinfo=UTC), url=url),
            event(readers[1], edition_id, "click", TOKYO - timedelta(days=2), url=url),
            event(readers[2], edition_id, "click", TOKYO + timedelta(minutes=40), url=url),
        ]

    tokyo_day(db, config, keys, newsroom, impossible)
    report = edition_report(db, config, "daily", "2026-11-26", TOKYO + timedelta(hours=1))
    d = next(row for row in report["stories"] if row["story_id"] == newsroom["D"])
    assert d["human_clicks"] == 1
    assert report["set_aside"] == [
        {"reason": "timestamped after its post was received", "clicks": 1},
        {"reason": "timestamped before its edition's slot", "clicks": 1},
    ]


def test_a_story_deleted_since_is_still_reported_by_its_id(tmp_path, db, keys, newsroom):
    config = make(tmp_path)
    tokyo_day(db, config, keys, newsroom, people_read_d(db, newsroom))
    db.execute("DELETE FROM stories WHERE id = ?", [newsroom["D"]])
    report = edition_report(db, config, "daily", "2026-11-26", TOKYO + timedelta(hours=1))
    d = next(row for row in report["stories"] if row["story_id"] == newsroom["D"])
    assert (d["title"], d["human_clicks"], d["impressions"]) == (None, 6, TOKYO_READERS)
    (edition,) = send_zone(db, config, "Europe/London", LONDON)
    assert newsroom["D"] not in edition.story_ids


def test_a_delivered_event_arriving_after_the_clicks_still_marks_the_scanners(
    tmp_path, db, keys, newsroom
):
    config = make(tmp_path)
    (edition,) = send_zone(db, config, "Asia/Tokyo", TOKYO)
    readers = deliveries(db, edition.saved_id)
    url = link(db, newsroom["D"])
    at = TOKYO + timedelta(minutes=2)
    post_signed(
        db, config, keys, [event(d, edition.saved_id, "click", at, url=url) for d in readers]
    )
    target = variant_target(db, config, "daily", LONDON, timezone="Europe/London")
    before = next(r for r in lineup(db, target) if r.story.id == newsroom["D"]).engagement
    assert (before.human_clicks, before.machine_clicks) == (TOKYO_READERS, 0)
    post_signed(db, config, keys, delivered_all(edition.saved_id, readers))
    after = next(r for r in lineup(db, target) if r.story.id == newsroom["D"]).engagement
    assert (after.human_clicks, after.machine_clicks) == (0, TOKYO_READERS)


def test_digest_stories_list_shows_each_storys_lift(tmp_path, db, keys, newsroom):
    config = make(tmp_path)
    tokyo_day(db, config, keys, newsroom, people_read_d(db, newsroom))
    path = write_config(tmp_path)
    listing = (
        CliRunner()
        .invoke(cli, ["--config", str(path), "stories", "list", "--now", LONDON.isoformat()])
        .output.splitlines()
    )
    d = next(line for line in listing if "\tStory D\t" in line)
    lift = next(e for e in lift_of(db, config) if e.story_id == newsroom["D"]).lift
    assert d.endswith(f"\tlift {lift:.2f} ({TOKYO_READERS} readers)") and lift > 1


def lift_of(db, config):
    return story_lifts(db, config.newsletter("daily"), LONDON).values()


def test_the_studios_lineup_shows_impressions_clicks_ctr_expected_lift_and_its_effect(
    tmp_path, db, keys, newsroom
):
    config = make(tmp_path)
    tokyo_day(db, config, keys, newsroom, people_read_d(db, newsroom))
    studio = create_studio(lambda: config, OutboxTransport(config)).test_client()
    page = studio.get(
        "/", query_string={"timezone": "Europe/London", "now": LONDON.isoformat()}
    ).get_data(as_text=True)
    row = page[page.index(f'data-story="{newsroom["D"]}"') :]
    row = row[: row.index("</tr>")]
    d = next(e for e in lift_of(db, config) if e.story_id == newsroom["D"])
    assert f'<td class="impressions">{TOKYO_READERS}</td>' in row
    assert '<td class="human-clicks">6</td>' in row
    assert '<td class="machine-clicks">0</td>' in row
    assert '<td class="ctr">30.0%</td>' in row
    assert f'<td class="expected-ctr">{d.expected_ctr * 100:.1f}%</td>' in row
    assert f'<td class="lift">{d.lift:.2f}</td>' in row
    assert f"rank × {d.lift:.2f}; up " in row


def test_digest_report_lists_every_story_most_read_for_its_position_first(
    tmp_path, db, keys, newsroom
):
    config = make(tmp_path)
    tokyo_day(db, config, keys, newsroom, people_read_d(db, newsroom))
    path = write_config(tmp_path)
    args = ["--config", str(path), "report", "2026-11-26"]
    report = json.loads(CliRunner().invoke(cli, [*args, "--json"]).output)
    stories = report["stories"]
    assert len(stories) == 6 and stories[0]["story_id"] == newsroom["D"]
    assert set(stories[0]) == {
        "story_id",
        "title",
        "url",
        "positions",
        "impressions",
        "human_clicks",
        "machine_clicks",
        "ctr",
        "expected_ctr",
        "lift",
    }
    assert [s["lift"] for s in stories] == sorted((s["lift"] for s in stories), reverse=True)
    printed = CliRunner().invoke(cli, args).output
    assert "most read for their position" in printed
    assert "1. Story D [story" in printed and "clicked by 6 (+ 0 machines), CTR 30.0%" in printed


def test_a_database_upgraded_to_the_click_summaries_keeps_its_sends_and_outcomes(
    tmp_path, newsroom, db, keys
):
    config = make(tmp_path)
    (edition,) = send_zone(db, config, "Asia/Tokyo", TOKYO)
    first = deliveries(db, edition.saved_id)[0]
    bounced = event(first, edition.saved_id, "bounce", TOKYO + timedelta(minutes=3), type="bounce")
    post_signed(db, config, keys, [bounced])
    before = story_lifts(db, config.newsletter("daily"), LONDON)
    # As if made before m013_story_clicks: its summaries gone, then the migration run.
    db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm013_story_clicks'")
    for table in (
        "edition_lineups",
        "edition_sends",
        "story_clicks",
        "story_click_hours",
        "position_click_hours",
        "reach_hours",
        "clicks_set_aside",
    ):
        db.execute(f"DROP TABLE {table}")
    db.execute("ALTER TABLE delivery_states DROP COLUMN delivered_at")
    migrations.apply(db)
    after = story_lifts(db, config.newsletter("daily"), LONDON)
    assert after == before
    assert after[newsroom["A"]].impressions == TOKYO_READERS - 1


def test_the_click_map_leaves_out_the_scanners_clicks(tmp_path, db, keys, newsroom):
    config = make(tmp_path)

    tokyo_day(db, config, keys, newsroom, people_and_scanners_of(db, newsroom))
    edition_id = db.execute(
        "SELECT id FROM editions WHERE timezone = 'Asia/Tokyo' ORDER BY id DESC LIMIT 1"
    ).fetchone()[0]
    shares = {row["story_id"]: row for row in link_clicks(db, edition_id) if row["clicks"]}
    assert list(shares) == [newsroom["A"]]
    assert (shares[newsroom["A"]]["readers"], shares[newsroom["A"]]["share"]) == (1, 1.0)


def people_and_scanners_of(db, newsroom):
    """Four readers behind a scanner click A and D a second after delivery; one person, A."""

    def clicks(readers, edition_id):
        delivered = TOKYO + timedelta(minutes=2)
        scanned = [
            event(d, edition_id, "click", delivered + timedelta(seconds=1), url=link(db, sid))
            for d in readers[:4]
            for sid in (newsroom["A"], newsroom["D"])
        ]
        person = event(
            readers[5],
            edition_id,
            "click",
            delivered + timedelta(hours=1),
            url=link(db, newsroom["A"]),
        )
        return [*scanned, person]

    return clicks


def tokyo_report(db, config):
    return edition_report(db, config, "daily", "2026-11-26", TOKYO + timedelta(hours=3))


def test_the_stories_chart_counts_peoples_clicks_not_the_scanners(tmp_path, db, keys, newsroom):
    config = make(tmp_path)
    tokyo_day(db, config, keys, newsroom, people_and_scanners_of(db, newsroom))
    stories, _ = story_positions(tokyo_report(db, config))
    clicked = {s["story_id"]: s["human_clicks"] for s in stories}
    assert (clicked[newsroom["A"]], clicked[newsroom["D"]]) == (1, 0)


def test_the_headline_clicked_counts_people_and_the_scanners_apart(tmp_path, db, keys, newsroom):
    config = make(tmp_path)
    tokyo_day(db, config, keys, newsroom, people_and_scanners_of(db, newsroom))
    report = tokyo_report(db, config)
    numbers = report["total"]["numbers"]
    assert (numbers["clicks"], numbers["machine_clicks"]) == (1, 4)
    assert "unique clicks by people 1 (+ machines only 4)" in "\n".join(report_lines(report))
    funnel = {row["stage"]: row["readers"] for row in zone_funnels(report)}
    assert (funnel["Clicked by people"], funnel["Clicked by machines only"]) == (1, 4)


def test_the_hours_chart_counts_peoples_clicks_not_the_scanners(tmp_path, db, keys, newsroom):
    config = make(tmp_path)
    tokyo_day(db, config, keys, newsroom, people_and_scanners_of(db, newsroom))
    # The outbox stamps sends with the machine's clock; this send was at Tokyo's slot.
    db.execute("UPDATE deliveries SET sent_at = ?", [to_db(TOKYO + timedelta(minutes=1))])
    rows = hours_since_send(db, tokyo_report(db, config))
    assert sum(r["events"] for r in rows if r["series"].startswith("Clicks")) == 1
