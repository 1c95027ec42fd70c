"""Per reader, never a repeat: each reader's history makes their variant (both transports)."""

from __future__ import annotations

import email
import email.policy
import html
import json
import re
import tempfile
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.clock import to_db, utcnow
from digest.config import Config
from digest.delivery.history import variant_groups, window_editions
from digest.delivery.ledger import edition_counts
from digest.delivery.send import NOTHING_NEW, send_newsletter
from digest.delivery.transports.outbox import OutboxTransport
from digest.delivery.transports.sendgrid import SendGridTransport
from digest.edition.build import edition_stories
from digest.edition.render import Renderer
from digest.errors import LeaseHeldError
from digest.feedback.report import edition_report, report_lines
from digest.lineup import lineup
from digest.preview import reader_target, variant_target
from digest.readers.subscribers import add_subscriber, get_subscriber, unsubscribe, update_profile
from digest.readers.subscriptions import set_subscription
from digest.run import run_due
from digest.status import digest_status
from digest.store import open_db
from digest.studio import create_studio

from helpers import EDITION_TIME, add_stories, make_config, story
from sendgrid_server import SendGridTestServer

API_KEY = "SG.history-test"
TITLE = re.compile(r"^(Old|New|Evening) [a-z]+ \d+$")
LONDON_MORNING = EDITION_TIME + timedelta(minutes=3)
# 07:03 in Tokyo on the 27th: 22:03 UTC on the 26th, the same evening.
TOKYO_MORNING = datetime(2026, 11, 26, 22, 3, tzinfo=EDITION_TIME.tzinfo)


def news_titles(text: str) -> list[str]:
    """The story titles of an email's top stories and recent posts ("Also read" links aside)."""
    return [
        line.strip()
        for line in text.splitlines()
        if TITLE.match(line.strip()) and "Also read" not in line
    ]


def outbox_texts(config: Config) -> dict[str, list[str]]:
    """Every email in the outbox, as its reader's list of plain-text parts."""
    texts: dict[str, list[str]] = {}
    for path in sorted(config.outbox_dir.rglob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        part = message.get_body(("plain",))
        texts.setdefault(path.stem, []).append(part.get_content())
    return texts


def server_texts(server: SendGridTestServer) -> dict[str, list[str]]:
    """Every email the SendGrid test server accepted, as its reader's list of plain texts."""
    texts: dict[str, list[str]] = {}
    for body in server.accepted_bodies():
        [plain] = [c["value"] for c in body["content"] if c["type"] == "text/plain"]
        for personalization in body["personalizations"]:
            for to in personalization["to"]:
                texts.setdefault(to["email"], []).append(plain)
    return texts


def assert_no_repeats(texts: dict[str, list[str]]) -> None:
    for reader, emails in texts.items():
        titles = [title for text in emails for title in news_titles(text)]
        assert len(titles) == len(set(titles)), f"{reader} got a story twice: {titles}"


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with SendGridTestServer(api_key=API_KEY) as running:
        yield running


def transport_for(kind: str, config: Config, server: SendGridTestServer | None):
    if kind == "outbox":
        return OutboxTransport(config)
    assert server is not None
    env = {"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": server.url}
    return SendGridTransport(config, env=env, sleep=lambda _: None)


def received(kind: str, config: Config, server: SendGridTestServer | None):
    return outbox_texts(config) if kind == "outbox" else server_texts(server)


def two_day_config(tmp_path, db_config: Config, kind: str) -> Config:
    """The test config with a two-day window, so yesterday's stories are still news today."""
    transport = {"kind": kind, "outbox": "outbox", "secret_key": "test-secret"}
    config = make_config(
        tmp_path,
        newsletter={"window_hours": 48, "also_read": False},
        transport=transport,
        sendgrid={"batch_size": 1000, "timeout_seconds": 1.0, "max_attempts": 1},
    )
    assert config.db_path == db_config.db_path
    return config


def categories_stories(prefix: str, at: datetime, n: int = 4) -> list[dict]:
    categories = ("world", "business", "science", "sport")
    return [
        story(h + 1, at=at, title=f"{prefix} {categories[h % 4]} {h}", category=categories[h % 4])
        for h in range(n)
    ]


@pytest.fixture(params=["outbox", "sendgrid"])
def kind(request):
    return request.param


@pytest.fixture
def maybe_server(kind, request):
    if kind == "sendgrid":
        return request.getfixturevalue("server")
    return None


def test_a_reader_who_moves_zone_gets_no_story_twice(db, config, tmp_path, kind, maybe_server):
    config = two_day_config(tmp_path, config, kind)
    add_stories(db, *categories_stories("Old", EDITION_TIME))
    add_subscriber(db, "ana@example.com", "Ana", timezone="Europe/London")
    add_subscriber(db, "bo@example.org", "Bo", timezone="Asia/Tokyo")
    transport = transport_for(kind, config, maybe_server)
    send_newsletter(db, config, None, LONDON_MORNING, transport=transport, timezone="Europe/London")
    update_profile(db, get_subscriber(db, "ana@example.com"), "form", timezone="Asia/Tokyo")
    add_stories(db, story(at=TOKYO_MORNING, title="Evening world 9"))

    report = send_newsletter(
        db, config, None, TOKYO_MORNING, transport=transport, timezone="Asia/Tokyo"
    )

    texts = received(kind, config, maybe_server)
    assert_no_repeats(texts)
    assert news_titles(texts["ana@example.com"][1]) == ["Evening world 9"]
    assert len(news_titles(texts["bo@example.org"][0])) == 5
    names = sorted(r.edition.history for r in report.editions)
    assert names == ["", "moved from Europe/London: 4 stories already sent"]


def test_a_reader_who_changes_topics_gets_no_story_twice(db, config, tmp_path, kind, maybe_server):
    config = two_day_config(tmp_path, config, kind)
    add_stories(db, *categories_stories("Old", EDITION_TIME))
    add_subscriber(db, "ana@example.com", "Ana")
    transport = transport_for(kind, config, maybe_server)
    send_newsletter(db, config, None, LONDON_MORNING, transport=transport)
    update_profile(db, get_subscriber(db, "ana@example.com"), "form", topics=["science", "sport"])
    add_subscriber(db, "cy@example.net", "Cy", ["science", "sport"])
    tomorrow = EDITION_TIME + timedelta(days=1)
    add_stories(db, *categories_stories("New", tomorrow))

    report = send_newsletter(db, config, None, tomorrow, transport=transport)

    texts = received(kind, config, maybe_server)
    assert_no_repeats(texts)
    assert sorted(news_titles(texts["ana@example.com"][1])) == ["New science 2", "New sport 3"]
    assert sorted(news_titles(texts["cy@example.net"][0])) == [
        "New science 2",
        "New sport 3",
        "Old science 2",
        "Old sport 3",
    ]
    [history] = [r.edition.history for r in report.editions if r.edition.history]
    assert history == "topics were every topic: 2 stories already sent"


def test_a_reader_who_resubscribes_gets_no_story_twice(db, config, tmp_path, kind, maybe_server):
    config = two_day_config(tmp_path, config, kind)
    add_stories(db, *categories_stories("Old", EDITION_TIME))
    ana = add_subscriber(db, "ana@example.com", "Ana")
    transport = transport_for(kind, config, maybe_server)
    send_newsletter(db, config, None, LONDON_MORNING, transport=transport)
    unsubscribe(db, "ana@example.com")
    set_subscription(db, ana.id, "daily", "active", "form")
    tomorrow = EDITION_TIME + timedelta(days=1)
    add_stories(db, story(at=tomorrow, title="New world 7"))

    send_newsletter(db, config, None, tomorrow, transport=transport)

    texts = received(kind, config, maybe_server)
    assert_no_repeats(texts)
    assert news_titles(texts["ana@example.com"][1]) == ["New world 7"]


def test_after_the_demo_send_a_zones_run_repeats_nothing(db, config, tmp_path, kind, maybe_server):
    """The demo sends one edition to every zone; New York's slot later finds nothing new."""
    config = two_day_config(tmp_path, config, kind)
    add_stories(db, *categories_stories("Old", EDITION_TIME))
    add_subscriber(db, "ny@example.com", "Ny", timezone="America/New_York")
    transport = transport_for(kind, config, maybe_server)
    send_newsletter(db, config, None, LONDON_MORNING, transport=transport)

    new_york_morning = EDITION_TIME + timedelta(hours=5, minutes=3)
    report = send_newsletter(
        db, config, None, new_york_morning, transport=transport, timezone="America/New_York"
    )

    assert len(received(kind, config, maybe_server)["ny@example.com"]) == 1
    [result] = report.editions
    assert result.edition.history.endswith("4 stories already sent")
    assert edition_counts(db, result.edition.saved_id)["skipped"] == 1
    [(status, error)] = db.execute(
        "SELECT status, error FROM deliveries WHERE edition_id = ?", [result.edition.saved_id]
    )
    assert (status, error) == ("skipped", NOTHING_NEW)
    assert not report.needs_attention
    assert "skipped 1" in report.summary()


def a_day_of_history(db, config: Config) -> datetime:
    """Three readers sent yesterday's four stories, one reader new since; today's slot."""
    add_stories(db, *categories_stories("Old", EDITION_TIME))
    for name in ("a", "b", "c"):
        add_subscriber(db, f"{name}@example.com")
    send_newsletter(db, config, None, LONDON_MORNING, transport=OutboxTransport(config))
    add_subscriber(db, "new@example.com")
    tomorrow = EDITION_TIME + timedelta(days=1)
    add_stories(db, story(at=tomorrow, title="New world 7"))
    return tomorrow


def test_readers_who_share_a_history_share_one_variant(db, config, tmp_path):
    config = two_day_config(tmp_path, config, "outbox")
    tomorrow = a_day_of_history(db, config)

    report = send_newsletter(db, config, None, tomorrow, transport=OutboxTransport(config))

    audiences = sorted((r.edition.history, r.audience) for r in report.editions)
    assert audiences == [("", 1), ("got an earlier edition: 4 stories already sent", 3)]


def test_a_history_outside_the_readers_topics_makes_no_variant(db, config, tmp_path):
    config = two_day_config(tmp_path, config, "outbox")
    add_stories(db, story(2, at=EDITION_TIME, title="Old world 1", category="world"))
    ana = add_subscriber(db, "ana@example.com")
    send_newsletter(db, config, None, LONDON_MORNING, transport=OutboxTransport(config))
    update_profile(db, ana, "form", topics=["science"])
    add_subscriber(db, "bo@example.com", "", ["science"])
    tomorrow = EDITION_TIME + timedelta(days=1)
    add_stories(db, story(at=tomorrow, title="New science 7", category="science"))

    report = send_newsletter(db, config, None, tomorrow, transport=OutboxTransport(config))

    assert [(r.edition.history, r.audience) for r in report.editions] == [("", 2)]


def ledger_rows(db, rows: list[tuple[int, int, str]]) -> None:
    """Write deliveries as a long-lived ledger may hold them (here, not through a send)."""
    now = to_db(utcnow())
    db.conn.executemany(
        """INSERT INTO deliveries (edition_id, subscriber_id, email, status, created_at,
           updated_at) VALUES (?, ?, ?, ?, ?, ?)""",
        [(edition, reader, "x@example.com", status, now, now) for edition, reader, status in rows],
    )


def test_ledger_rows_of_deleted_editions_and_stories_are_ignored(db, config, tmp_path):
    config = two_day_config(tmp_path, config, "outbox")
    add_stories(db, *categories_stories("Old", EDITION_TIME))
    ana = add_subscriber(db, "ana@example.com")
    send_newsletter(db, config, None, LONDON_MORNING, transport=OutboxTransport(config))
    [old_world] = [i for (i,) in db.execute("SELECT id FROM stories WHERE title = 'Old world 0'")]
    db.execute("DELETE FROM stories WHERE id = ?", [old_world])
    ledger_rows(db, [(99999, ana.id, "sent")])
    tomorrow = EDITION_TIME + timedelta(days=1)
    add_stories(db, story(at=tomorrow, title="New world 7"))

    report = send_newsletter(db, config, None, tomorrow, transport=OutboxTransport(config))

    [result] = report.editions
    assert result.edition.history == "got an earlier edition: 3 stories already sent"
    assert news_titles(outbox_texts(config)["ana@example.com"][1]) == ["New world 7"]


def test_a_10000_edition_history_reads_only_the_windows_editions(db, config, tmp_path):
    config = two_day_config(tmp_path, config, "outbox")
    add_stories(db, *categories_stories("Old", EDITION_TIME))
    ana = add_subscriber(db, "ana@example.com")
    long_ago = EDITION_TIME - timedelta(days=400)
    db.conn.executemany(
        """INSERT INTO editions (newsletter, slot_at, variant, topics, subject, html, text,
           story_ids, created_at) VALUES ('daily', ?, ?, '', 's', 'h', 't', '[1, 2, 3]', ?)""",
        [
            (to_db(long_ago + timedelta(minutes=30 * n)), f"v{n}", to_db(long_ago))
            for n in range(10_000)
        ],
    )
    ids = [i for (i,) in db.execute("SELECT id FROM editions")]
    ledger_rows(db, [(i, ana.id, "sent") for i in ids])
    send_newsletter(db, config, None, LONDON_MORNING, transport=OutboxTransport(config))
    newsletter = config.newsletter(None)
    tomorrow = EDITION_TIME + timedelta(days=1)

    stories = edition_stories(db, newsletter, tomorrow, None)
    found = window_editions(db, newsletter, tomorrow, None, stories)

    assert len(found) == 1
    plan = " ".join(
        row[-1]
        for row in db.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM editions WHERE slot_at > ?", [to_db(tomorrow)]
        )
    )
    assert "editions_slot" in plan
    groups = variant_groups(db, newsletter, tomorrow, None, [("", None)], stories)
    assert sorted(len(g.already_sent) for g in groups) == [0, 4]


def test_each_history_variant_gets_its_own_outbox_folder(db, config, tmp_path):
    config = two_day_config(tmp_path, config, "outbox")
    add_stories(db, *categories_stories("Old", EDITION_TIME))
    add_subscriber(db, "ana@example.com")
    send_newsletter(db, config, None, LONDON_MORNING, transport=OutboxTransport(config))
    add_subscriber(db, "bo@example.com")
    tomorrow = EDITION_TIME + timedelta(days=1)
    add_stories(db, story(at=tomorrow, title="New world 7"))

    report = send_newsletter(db, config, None, tomorrow, transport=OutboxTransport(config))

    slugs = {r.edition.slug for r in report.editions}
    assert len(slugs) == 2
    assert {p.parent.name for p in config.outbox_dir.rglob("*.eml")} >= slugs
    assert json.loads(
        db.execute(
            "SELECT already_sent FROM editions WHERE history != '' ORDER BY id DESC"
        ).fetchone()[0]
    ) == sorted(i for (i,) in db.execute("SELECT id FROM stories WHERE title LIKE 'Old %'"))


ZONES = ("UTC", "Asia/Tokyo")
TOPIC_CHOICES = ((), ("world",), ("science",), ("world", "science"))
reader_state = st.tuples(st.sampled_from(ZONES), st.sampled_from(TOPIC_CHOICES), st.booleans())


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.lists(reader_state, min_size=2, max_size=4),
    days=st.lists(
        st.tuples(
            st.lists(st.sampled_from(("world", "science")), min_size=0, max_size=3),
            st.lists(reader_state, min_size=4, max_size=4),
            st.booleans(),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_no_reader_ever_gets_a_story_twice(start, days):
    """Random moves, topic changes, leaving and coming back, all-zone sends: never a repeat."""
    with tempfile.TemporaryDirectory() as folder:
        config = make_config(Path(folder), newsletter={"window_hours": 48, "also_read": False})
        db = open_db(config.db_path)
        transport = OutboxTransport(config)
        readers = [
            add_subscriber(db, f"r{n}@example.com", "", topics, zone)
            for n, (zone, topics, _) in enumerate(start)
        ]
        serial = 0
        for day, (categories, changes, everyone) in enumerate(days):
            utc_slot = EDITION_TIME + timedelta(days=day)
            tokyo_slot = utc_slot - timedelta(hours=9)
            for category in categories:
                serial += 1
                title = f"New {category} {serial}"
                add_stories(db, story(0.5, at=tokyo_slot, title=title, category=category))
            for reader, (zone, topics, subscribed) in zip(readers, changes, strict=False):
                update_profile(db, get_subscriber(db, reader.email), "form", topics=topics)
                update_profile(db, get_subscriber(db, reader.email), "form", timezone=zone)
                set_subscription(
                    db, reader.id, "daily", "active" if subscribed else "unsubscribed", "form"
                )
            for slot, zone in ((tokyo_slot, "Asia/Tokyo"), (utc_slot, "UTC")):
                now = slot + timedelta(minutes=3)
                send_newsletter(db, config, None, now, transport=transport, timezone=zone)
            if everyone:
                late = utc_slot + timedelta(hours=1, minutes=3)
                serial += 1
                add_stories(db, story(0.2, at=late, title=f"New world {serial}"))
                send_newsletter(db, config, None, late, transport=transport)
        db.close()
        assert_no_repeats(outbox_texts(config))


def test_a_readers_lineup_marks_and_skips_the_stories_they_already_got(db, config, tmp_path):
    config = two_day_config(tmp_path, config, "outbox")
    tomorrow = a_day_of_history(db, config)

    target = reader_target(db, config, None, tomorrow, "a@example.com")
    rows = lineup(db, target)

    old = [row for row in rows if row.story.title.startswith("Old")]
    assert len(old) == 4
    assert {(row.place, row.note) for row in old} == {
        ("already sent", "skipped: already sent to this reader")
    }
    assert [row.place for row in rows if row.story.title == "New world 7"] == ["top 1"]
    assert target.history == "got an earlier edition: 4 stories already sent"


def test_a_variants_lineup_says_how_many_of_its_readers_already_got_each_story(
    db, config, tmp_path
):
    config = two_day_config(tmp_path, config, "outbox")
    tomorrow = a_day_of_history(db, config)

    rows = lineup(db, variant_target(db, config, None, tomorrow))

    assert {row.story.title: row.sent_to for row in rows} == {
        "New world 7": 0,
        "Old world 0": 3,
        "Old business 1": 3,
        "Old science 2": 3,
        "Old sport 3": 3,
    }


def test_the_studio_lists_history_variants_and_opens_each(db, config, tmp_path):
    config = two_day_config(tmp_path, config, "outbox")
    tomorrow = a_day_of_history(db, config)
    client = create_studio(lambda: config, OutboxTransport(config), now=tomorrow).test_client()

    front = html.unescape(client.get("/").get_data(as_text=True))

    assert "got an earlier edition: 4 stories already sent" in front
    [link] = re.findall(r'href="(/\?[^"]*already_sent=[^"]+)"', front)
    page = html.unescape(client.get(link).get_data(as_text=True))
    assert "History: 4 stories already sent" in page
    assert page.count("skipped: already sent to these readers") == 4
    fresh = html.unescape(client.get("/?timezone=UTC").get_data(as_text=True))
    assert fresh.count("already sent to 3 of these readers") == 4


def test_after_the_demo_digest_run_skips_and_status_names_the_history_variant(db, config, tmp_path):
    config = two_day_config(tmp_path, config, "outbox")
    add_stories(db, *categories_stories("Old", EDITION_TIME))
    add_subscriber(db, "ny@example.com", "Ny", timezone="America/New_York")
    send_newsletter(db, config, None, LONDON_MORNING, transport=OutboxTransport(config))
    new_york_morning = EDITION_TIME + timedelta(hours=5, minutes=3)

    report = run_due(db, config, new_york_morning, transport=OutboxTransport(config))

    assert not report.failed
    assert any(NOTHING_NEW in line for line in report.lines)
    lines = digest_status(db, config, new_york_morning).lines()
    assert (
        "      variant got an earlier edition: 4 stories already sent: "
        "sent 0, failed 0, skipped 1, unknown 0"
    ) in lines
    assert "  needs attention: nothing" in lines


def test_the_report_names_each_history_variant_in_print_and_in_the_studio(db, config, tmp_path):
    config = two_day_config(tmp_path, config, "outbox")
    tomorrow = a_day_of_history(db, config)
    send_newsletter(db, config, None, tomorrow, transport=OutboxTransport(config))
    later = tomorrow + timedelta(hours=2)

    printed = report_lines(edition_report(db, config, None, None, later))
    client = create_studio(lambda: config, OutboxTransport(config), now=later).test_client()
    page = html.unescape(client.get("/report?last=1").get_data(as_text=True))

    name = "got an earlier edition: 4 stories already sent"
    assert any(f"all topics, UTC, {name} (edition" in line for line in printed)
    assert f'<span class="history">{name}</span>' in page


class SendsWeeklyWhileRendering(Renderer):
    """Renders as the project does; its first render runs a whole send of `weekly` from another
    connection: the moment between planning a slot (its histories read) and queueing it."""

    def __init__(self, config: Config):
        super().__init__(config.templates_dir)
        self.config = config
        self.other_send: str = ""

    def render_edition(self, *args, **kwargs):
        if not self.other_send:
            other = open_db(self.config.db_path)
            try:
                send_newsletter(
                    other,
                    self.config,
                    "weekly",
                    LONDON_MORNING,
                    transport=OutboxTransport(self.config),
                )
                self.other_send = "sent"
            except LeaseHeldError as exc:
                self.other_send = str(exc)
            finally:
                other.close()
        return super().render_edition(*args, **kwargs)


def test_a_send_of_another_newsletter_landing_while_a_slot_is_planned_repeats_no_story(
    db, config, tmp_path
):
    """Histories are read when a slot is planned: no other send may queue readers before the
    slot's own readers are queued, or a reader could get the same story from both."""
    config = two_day_config(tmp_path, config, "outbox")
    daily = config.newsletters["daily"]
    config = replace(
        config, newsletters={"daily": daily, "weekly": replace(daily, name="weekly", title="W")}
    )
    add_stories(db, *categories_stories("Old", EDITION_TIME))
    ana = add_subscriber(db, "ana@example.com", "Ana")
    set_subscription(db, ana.id, "weekly", "active", "form")
    renderer = SendsWeeklyWhileRendering(config)

    send_newsletter(
        db, config, "daily", LONDON_MORNING, transport=OutboxTransport(config), renderer=renderer
    )

    assert "Another process" in renderer.other_send
    assert_no_repeats(outbox_texts(config))
    # The weekly's send, refused, goes when run again: with nothing new for Ana.
    send_newsletter(db, config, "weekly", LONDON_MORNING, transport=OutboxTransport(config))
    [ana_emails] = outbox_texts(config).values()
    assert len(ana_emails) == 1
    assert_no_repeats(outbox_texts(config))


def test_a_held_variant_rebuilt_after_a_fix_repeats_no_story_sent_to_its_readers_meanwhile(
    db, config, tmp_path
):
    """Held at 07:05 (an http image), its readers frozen; a story published before the slot
    but read in late goes out with another newsletter meanwhile; the fixed variant, rebuilt
    at 07:25, leaves it out for them."""
    from digest.newsroom.stories import upsert_stories

    daily = config.newsletters["daily"]
    config = replace(
        config, newsletters={"daily": daily, "weekly": replace(daily, name="weekly", title="W")}
    )
    tram = story(
        1, url="https://news.test/tram", title="Old world 1", image_url="http://i.test/t.jpg"
    )
    add_stories(db, tram)
    ana = add_subscriber(db, "ana@example.com", "Ana")
    set_subscription(db, ana.id, "weekly", "active", "form")
    outbox = OutboxTransport(config)
    held = send_newsletter(
        db, config, "daily", EDITION_TIME + timedelta(minutes=5), transport=outbox
    )
    assert held.held
    add_stories(db, story(0.5, title="Old science 2", category="science"))
    send_newsletter(db, config, "weekly", EDITION_TIME + timedelta(minutes=15), transport=outbox)
    upsert_stories(db, [tram | {"image_url": "https://i.test/t.jpg"}], "test")

    send_newsletter(db, config, "daily", EDITION_TIME + timedelta(minutes=25), transport=outbox)

    texts = outbox_texts(config)
    assert len(texts["ana@example.com"]) == 2
    assert_no_repeats(texts)


def test_retrying_a_failed_reader_who_got_the_stories_since_sends_nothing_twice(
    db, config, tmp_path, server
):
    """Ana's London batch was refused; she moved to Tokyo and got its stories there. Retrying
    London's failed readers later skips her rather than repeat them."""
    config = two_day_config(tmp_path, config, "sendgrid")
    add_stories(db, *categories_stories("Old", EDITION_TIME))
    add_subscriber(db, "ana@example.com", "Ana", timezone="Europe/London")
    transport = transport_for("sendgrid", config, server)
    server.script(400)
    send_newsletter(db, config, None, LONDON_MORNING, transport=transport, timezone="Europe/London")
    update_profile(db, get_subscriber(db, "ana@example.com"), "form", timezone="Asia/Tokyo")
    send_newsletter(db, config, None, TOKYO_MORNING, transport=transport, timezone="Asia/Tokyo")

    retry = send_newsletter(
        db,
        config,
        None,
        LONDON_MORNING,
        transport=transport,
        timezone="Europe/London",
        retry_failed=True,
    )

    texts = received("sendgrid", config, server)
    assert len(texts["ana@example.com"]) == 1
    assert_no_repeats(texts)
    assert retry.total("skipped") == 1
