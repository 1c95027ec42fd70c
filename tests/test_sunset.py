"""The sunset policy's rules and its bad input, each a defined outcome: machines' opens and clicks,
events out of order or stamped by a wrong clock, runs whose clock went back, a reader both cold
and bounced, the keep link of a reader who left, and the ways a lapsed reader comes back.
"""

from __future__ import annotations

import email
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import policy

import pytest
from werkzeug.test import Client

from digest.clock import from_db, to_db, utcnow
from digest.config import parse_config
from digest.delivery.transports.outbox import OutboxTransport
from digest.edition.checks import has_errors
from digest.edition.render import Renderer
from digest.errors import ConfigError
from digest.feedback.events import process_pending, store_post
from digest.feedback.figures import list_health as health_by_day
from digest.feedback.list_health import list_health
from digest.readers.reconfirm import reconfirm_checks, render_reconfirm
from digest.readers.signup import confirm, expire_pending, process_signups, sign_up
from digest.readers.subscribers import add_subscriber, find_subscriber
from digest.readers.subscriptions import mark_address, subscriptions_of
from digest.run import run_due
from digest.web import create_app

from helpers import add_stories, config_data, make_config, story

START = datetime(2026, 3, 2, 7, 5, tzinfo=UTC)
SUBSCRIBED = "2026-01-01T00:00:00Z"
POLICY = {"after_days": 14, "min_editions": 10, "grace_days": 7}


@pytest.fixture
def config(tmp_path, migrated_database):
    import shutil

    config = make_config(tmp_path, newsletter={"sunset": POLICY})
    shutil.copyfile(migrated_database, config.db_path)
    return config


@pytest.fixture
def transport(config):
    return OutboxTransport(config)


def reader(db, address: str) -> int:
    subscriber_id = add_subscriber(db, address).id
    db.execute(
        "UPDATE subscriptions SET updated_at = ? WHERE subscriber_id = ?",
        [SUBSCRIBED, subscriber_id],
    )
    return subscriber_id


def run_day(db, config, transport, n: int) -> list[str]:
    now = START + timedelta(days=n)
    add_stories(db, story(1, at=now))
    return run_due(db, config, now, transport=transport).lines


def post(db, *events: dict, received_at: datetime | None = None) -> None:
    """Events as the webhook stores them (verified), then processed."""
    body = json.dumps(list(events)).encode()
    store_post(db, body, {}, received_at or datetime.now(UTC))
    process_pending(db)


def text_of(path) -> str:
    """The plain-text part of an .eml the outbox wrote."""
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    return message.get_body(("plain",)).get_content()


def event(db, address: str, name: str, at: datetime | int, day: int | None = None, **fields):
    """An event about the latest delivery to `address` (or that of day `day`), as SendGrid
    posts it."""
    delivery_id, edition_id = db.execute(
        """SELECT d.id, d.edition_id FROM deliveries d JOIN editions e ON e.id = d.edition_id
           WHERE d.email = ? AND (? IS NULL OR e.slot_at <= ?) ORDER BY d.id DESC LIMIT 1""",
        [address, day, to_db(START + timedelta(days=day or 0))],
    ).fetchone()
    stamp = at if isinstance(at, int) else int(at.timestamp())
    return {
        "email": address,
        "event": name,
        "timestamp": stamp,
        "sg_event_id": f"{address}-{name}-{stamp}-{fields.get('url', '')}",
        "digest_delivery": str(delivery_id),
        "digest_edition": str(edition_id),
        **fields,
    }


def engagement(db, subscriber_id: int) -> tuple[str | None, str | None]:
    row = db.execute(
        "SELECT last_open_at, last_click_at FROM reader_engagement WHERE subscriber_id = ?",
        [subscriber_id],
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)


def status(db, subscriber_id: int) -> str:
    return subscriptions_of(db, subscriber_id)["daily"]


def asks(config) -> list[str]:
    folder = config.outbox_dir / "reconfirms"
    return sorted(p.name for p in folder.glob("*.eml")) if folder.exists() else []


def silent_weeks(db, config, transport, days: int, *addresses: str) -> None:
    """`days` days of editions, each heard of by the webhook (a delivered event per reader)."""
    for n in range(days):
        run_day(db, config, transport, n)
        post(
            db,
            *(event(db, a, "delivered", START + timedelta(days=n, minutes=1)) for a in addresses),
        )


def story_url(db, address: str) -> str:
    """The link of the first story of the latest edition sent to `address`, as clicked."""
    story_ids = db.execute(
        """SELECT e.story_ids FROM deliveries d JOIN editions e ON e.id = d.edition_id
           WHERE d.email = ? ORDER BY d.id DESC LIMIT 1""",
        [address],
    ).fetchone()[0]
    story_id = json.loads(story_ids)[0]
    url = db.execute("SELECT url FROM stories WHERE id = ?", [story_id]).fetchone()[0]
    return f"{url}?digest_story={story_id}"


def test_apple_proxy_opens_and_scanner_clicks_are_not_a_readers_engagement(db, config, transport):
    ana = reader(db, "ana@example.com")
    run_day(db, config, transport, 0)
    delivered = int((START + timedelta(minutes=1)).timestamp())
    url = story_url(db, "ana@example.com")
    later = datetime.fromtimestamp(delivered + 7200, UTC)
    post(
        db,
        event(db, "ana@example.com", "delivered", delivered),
        event(db, "ana@example.com", "open", delivered + 3600, sg_machine_open=True),
        event(db, "ana@example.com", "click", delivered + 5, url=url),
        event(db, "ana@example.com", "open", delivered + 2),
        received_at=later,
    )
    assert engagement(db, ana) == (None, None)
    post(db, event(db, "ana@example.com", "open", delivered + 600), received_at=later)
    assert engagement(db, ana) == (to_db(datetime.fromtimestamp(delivered + 600, UTC)), None)


def test_a_readers_click_is_their_engagement(db, config, transport):
    ana = reader(db, "ana@example.com")
    run_day(db, config, transport, 0)
    delivered = int((START + timedelta(minutes=1)).timestamp())
    clicked = delivered + 900
    post(
        db,
        event(db, "ana@example.com", "delivered", delivered),
        event(db, "ana@example.com", "click", clicked, url=story_url(db, "ana@example.com")),
        received_at=datetime.fromtimestamp(clicked + 60, UTC),
    )
    assert engagement(db, ana) == (None, to_db(datetime.fromtimestamp(clicked, UTC)))


def test_events_out_of_order_keep_the_latest_open_and_click(db, config, transport):
    ana = reader(db, "ana@example.com")
    run_day(db, config, transport, 0)
    late = START + timedelta(days=3)
    post(db, event(db, "ana@example.com", "open", late))
    post(db, event(db, "ana@example.com", "open", START + timedelta(days=1)))
    assert engagement(db, ana)[0] == to_db(late)


def test_an_event_stamped_in_the_future_counts_from_when_it_arrived(db, config, transport):
    ana = reader(db, "ana@example.com")
    run_day(db, config, transport, 0)
    before = datetime.now(UTC).replace(microsecond=0)
    post(db, event(db, "ana@example.com", "open", datetime(2099, 1, 1, tzinfo=UTC)))
    opened = from_db(engagement(db, ana)[0])
    assert before <= opened <= datetime.now(UTC)


def test_an_open_before_any_delivered_event_is_a_persons(db, config, transport):
    ana = reader(db, "ana@example.com")
    run_day(db, config, transport, 0)
    # SendGrid's delivered event is late or never ticked: nothing says the open was a scanner's.
    post(db, event(db, "ana@example.com", "open", START + timedelta(hours=1)))
    assert engagement(db, ana)[0] == to_db(START + timedelta(hours=1))


def test_a_silent_reader_is_asked_once_with_the_reconfirm_email(db, config, transport):
    ana = reader(db, "ana@example.com")
    silent_weeks(db, config, transport, 14, "ana@example.com")
    assert asks(config) == []
    lines = run_day(db, config, transport, 14)
    assert "sunset daily: 1 asked" in lines
    assert asks(config) == ["ana@example.com.eml"]
    message = email.message_from_bytes(
        (config.outbox_dir / "reconfirms" / "ana@example.com.eml").read_bytes(),
        policy=policy.default,
    )
    assert message["Subject"] == "Still want Test Daily?"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert re.search(r'href="https://news\.test/keep/[^"]+" class="button"', html)
    assert "prefers-color-scheme: dark" in html
    assert "https://news.test/keep/" in text and "https://news.test/u/" in text
    # Later runs, the same day or the next, never ask again.
    run_due(db, config, START + timedelta(days=14, hours=1), transport=transport)
    run_day(db, config, transport, 15)
    assert db.execute("SELECT COUNT(*) FROM audit WHERE action = 'reconfirm'").fetchone()[0] == 1
    assert status(db, ana) == "active"


def test_the_reconfirm_email_passes_the_digests_checks(config):
    rendered = render_reconfirm(
        config, Renderer(config.templates_dir), config.newsletter(None), START
    )
    findings = reconfirm_checks(config, rendered)
    assert not has_errors(findings), findings
    assert "%%" not in rendered.preview(config).html


def test_a_run_whose_clock_went_back_neither_lapses_nor_asks_again(db, config, transport):
    ana = reader(db, "ana@example.com")
    silent_weeks(db, config, transport, 15, "ana@example.com")
    assert asks(config) == ["ana@example.com.eml"]
    asked_at = db.execute("SELECT asked_at FROM subscriptions").fetchone()[0]
    # The clock jumps back two days, then a month ahead of the grace, then back again.
    run_due(db, config, START + timedelta(days=12), transport=transport)
    assert status(db, ana) == "active"
    assert db.execute("SELECT asked_at FROM subscriptions").fetchone()[0] == asked_at
    run_due(db, config, START + timedelta(days=21, hours=1), transport=transport)
    assert status(db, ana) == "lapsed"
    run_due(db, config, START + timedelta(days=13), transport=transport)
    assert status(db, ana) == "lapsed"
    assert len(asks(config)) == 1


def test_a_reader_both_cold_and_bounced_is_bounced_never_asked_nor_lapsed(db, config, transport):
    ana = reader(db, "ana@example.com")
    silent_weeks(db, config, transport, 10, "ana@example.com")
    mark_address(db, ana, "bounced", "webhook")
    for n in range(10, 30):
        run_day(db, config, transport, n)
    assert asks(config) == []
    assert status(db, ana) == "active"
    assert find_subscriber(db, "ana@example.com").status == "bounced"


def test_a_late_open_from_before_the_ask_ends_it(db, config, transport):
    ana = reader(db, "ana@example.com")
    silent_weeks(db, config, transport, 15, "ana@example.com")
    # An open of day 3's edition, days late: the reader was not silent all along.
    post(db, event(db, "ana@example.com", "open", START + timedelta(days=3, hours=2), day=3))
    lines = run_day(db, config, transport, 16)
    assert "sunset daily: 1 kept by reading" in lines
    for n in range(17, 25):
        run_day(db, config, transport, n)
    assert status(db, ana) == "active"
    assert len(asks(config)) == 1


def test_the_keep_link_changes_nothing_for_a_reader_who_left(db, config, transport):
    ana = reader(db, "ana@example.com")
    silent_weeks(db, config, transport, 15, "ana@example.com")
    text = text_of(config.outbox_dir / "reconfirms" / "ana@example.com.eml")
    keep = "/keep/" + re.search(r"https://news\.test/keep/(\S+)", text).group(1)
    app = Client(create_app(config, transport))
    unsubscribe = re.search(r"https://news\.test(/u/\S+)", text).group(1)
    assert app.post(unsubscribe).status_code == 200
    assert "nothing to keep" in app.get(keep).get_data(as_text=True)
    assert "Nothing was changed" in app.post(keep).get_data(as_text=True)
    assert status(db, ana) == "unsubscribed"


def test_a_forged_keep_link_is_refused(config, transport):
    app = Client(create_app(config, transport))
    assert app.post("/keep/1.0123456789abcdef.daily.forged").status_code == 400


def lapse(db, config, transport, address: str) -> int:
    subscriber_id = reader(db, address)
    silent_weeks(db, config, transport, 22, address)
    assert status(db, subscriber_id) == "lapsed"
    return subscriber_id


def test_a_lapsed_reader_is_neither_unsubscribed_nor_mailed(db, config, transport):
    ana = lapse(db, config, transport, "ana@example.com")
    assert find_subscriber(db, "ana@example.com").status == "lapsed"
    before = db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]
    run_day(db, config, transport, 22)
    assert db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == before
    unsubscribes = db.execute(
        "SELECT COUNT(*) FROM audit WHERE new_status = 'unsubscribed' AND subscriber_id = ?",
        [ana],
    ).fetchone()[0]
    assert unsubscribes == 0


def test_a_lapsed_reader_comes_back_in_one_press_from_their_page(db, config, transport):
    ana = lapse(db, config, transport, "ana@example.com")
    text = text_of(config.outbox_dir / "reconfirms" / "ana@example.com.eml")
    page = re.search(r"https://news\.test(/u/[^\s#]+)", text).group(1)
    app = Client(create_app(config, transport))
    shown = app.get(page).get_data(as_text=True)
    assert "Send me Test Daily again" in shown
    assert status(db, ana) == "lapsed"
    answer = app.post(page + "/resume").get_data(as_text=True)
    assert "will come to your inbox again" in answer
    assert status(db, ana) == "active"
    # Not asked again at once: the silence starts over.
    for n in range(22, 30):
        run_day(db, config, transport, n)
    assert status(db, ana) == "active"


def test_a_lapsed_reader_who_signs_up_again_stays_lapsed_until_they_confirm(db, config, transport):
    ana = lapse(db, config, transport, "ana@example.com")
    sign_up(db, config, "ana@example.com")
    process_signups(db, config, transport)
    assert status(db, ana) == "lapsed"
    # Nobody confirms for weeks: the lapsed subscription stays, never dropped as a stale one.
    expire_pending(db, datetime.now(UTC) + timedelta(days=30))
    assert status(db, ana) == "lapsed"
    sign_up(db, config, "ana@example.com", now=datetime.now(UTC) + timedelta(days=31))
    process_signups(db, config, transport, now=datetime.now(UTC))
    text = text_of(config.outbox_dir / "confirmations" / "ana@example.com.eml")
    token = re.search(r"https://news\.test/confirm/(\S+)", text).group(1)
    confirm(db, config, token)
    assert status(db, ana) == "active"


def test_with_the_policy_off_nobody_is_asked(tmp_path, migrated_database):
    import shutil

    from digest.store import open_db

    config = make_config(tmp_path, newsletter={"sunset": POLICY | {"enabled": False}})
    shutil.copyfile(migrated_database, config.db_path)
    db = open_db(config.db_path)
    transport = OutboxTransport(config)
    reader(db, "ana@example.com")
    silent_weeks(db, config, transport, 30, "ana@example.com")
    assert asks(config) == []
    db.close()


@pytest.mark.parametrize(
    ("sunset", "message"),
    [
        ({"after_days": 0}, "must be at least 1"),
        ({"grace_days": "two weeks"}, "must be a number"),
        ({"after_day": 90}, "Unknown key 'after_day'"),
        ({"enabled": "no"}, "must be true or false"),
    ],
)
def test_a_bad_sunset_setting_is_refused_by_name(tmp_path, sunset, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(config_data({"sunset": sunset}), tmp_path / "digest.toml", env={})


def test_the_studio_shows_list_health_as_the_command_counts_it_and_previews_the_email(
    db, config, transport
):
    from digest.feedback.list_health import list_health
    from digest.studio import create_studio

    lapse(db, config, transport, "ana@example.com")
    reader(db, "bo@example.com")
    now = START + timedelta(days=22)
    studio = create_studio(lambda: config, transport, now=now).test_client()
    page = studio.get("/list-health").get_data(as_text=True)
    counts = list_health(db, config, None, now)["counts"]
    row = page[page.index('<tr class="list-now">') :]
    row = row[: row.index("</tr>")]
    shown = {k: int(v) for k, v in re.findall(r'<td data-count="(\w+)">(\d+)</td>', row)}
    assert shown == counts
    assert (counts["subscriptions"], counts["lapsed"], counts["active"]) == (2, 1, 1)
    assert studio.get("/list-health.json").get_json()["counts"] == counts
    assert "Still want Test Daily?" in page and "check-error" not in page
    email_html = studio.get("/reconfirm.html")
    assert "frame-ancestors 'self'" in email_html.headers["Content-Security-Policy"]
    body = email_html.get_data(as_text=True)
    assert "https://news.test/u/preview" in body and "%%" not in body
    assert "/keep/" not in body
    assert "Hello," in studio.get("/reconfirm.txt").get_data(as_text=True)


def test_the_migration_keeps_every_reader_their_ids_and_the_id_sequence(tmp_path):
    from sqlite_utils import Database

    from digest.store import migrations, open_db

    path = tmp_path / "old.db"
    old = Database(path)
    migrations.apply(old, stop_before=["m014_list_health"])
    now = to_db(datetime.now(UTC))
    for row_id, address, state in (
        (3, "ana@example.com", "active"),
        (9, "bo@example.com", "bounced"),
    ):
        old.execute(
            """INSERT INTO subscribers (id, email, status, created_at, updated_at, link_nonce)
               VALUES (?, ?, ?, ?, ?, 'abcdef0123456789')""",
            [row_id, address, state, now, now],
        )
        old.execute(
            """INSERT INTO subscriptions (subscriber_id, newsletter, status, created_at,
               updated_at, confirm_code) VALUES (?, 'daily', 'active', ?, ?, 'code')""",
            [row_id, now, now],
        )
    # A reader since forgotten had id 12: no new reader may ever get it.
    old.execute("UPDATE sqlite_sequence SET seq = 12 WHERE name = 'subscribers'")
    old.close()
    db = open_db(path)
    rows = db.execute(
        "SELECT id, email, status, link_nonce FROM subscribers ORDER BY id"
    ).fetchall()
    assert rows == [
        (3, "ana@example.com", "active", "abcdef0123456789"),
        (9, "bo@example.com", "bounced", "abcdef0123456789"),
    ]
    assert db.execute("SELECT confirm_code, asked_at FROM subscriptions").fetchall() == [
        ("code", None),
        ("code", None),
    ]
    assert add_subscriber(db, "cy@example.com").id == 13
    db.close()


def test_status_tells_how_many_are_asked_once_events_arrive(db, config, transport):
    from digest.status import digest_status

    reader(db, "ana@example.com")
    silent_weeks(db, config, transport, 15, "ana@example.com")
    [newsletter] = digest_status(db, config, START + timedelta(days=15)).newsletters
    assert newsletter.sunset.startswith("on: 1 reader(s) asked and not answered yet, 0 lapsed")


def test_saving_preferences_keeps_a_lapsed_newsletter_lapsed_unless_it_is_ticked(
    db, config, transport
):
    ana = lapse(db, config, transport, "ana@example.com")
    text = text_of(config.outbox_dir / "reconfirms" / "ana@example.com.eml")
    page = re.search(r"https://news\.test(/u/[^\s#]+)", text).group(1)
    app = Client(create_app(config, transport))
    assert app.post(page + "/preferences", data={"timezone": "UTC"}).status_code == 200
    assert status(db, ana) == "lapsed"
    form = {"timezone": "UTC", "newsletters": "daily"}
    assert app.post(page + "/preferences", data=form).status_code == 200
    assert status(db, ana) == "active"


def test_the_list_health_chart_counts_the_lapsed_as_report_list_does(db, config, transport):
    ana = lapse(db, config, transport, "ana@example.com")
    # Ana joined a month ago (the audit's clock is the machine's); Ben joins today.
    joined = to_db(utcnow() - timedelta(days=30))
    db.execute(
        "UPDATE audit SET at = ? WHERE subscriber_id = ? AND new_status = 'active'", [joined, ana]
    )
    reader(db, "ben@example.com")
    now = utcnow()
    rows = health_by_day(db, "daily", now.date(), "UTC")
    health = list_health(db, config, "daily", now)
    assert sum(row["lapsed"] for row in rows) == health["counts"]["lapsed"] == 1
    assert rows[-1]["active"] == health["counts"]["active"] == 1
    # Yesterday Ana was still active and Ben not yet there: her lapse left the active.
    assert rows[-2]["active"] == 1
    assert rows[-1]["new"] == 1


def test_a_reconfirm_email_sendgrid_never_answered_is_not_sent_again_and_says_so(
    db, config, transport, monkeypatch
):
    from digest.delivery.transports.sendgrid import SendGridTransport
    from digest.status import digest_status

    from sendgrid_server import Fault, SendGridTestServer

    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    reader(db, "ana@example.com")
    silent_weeks(db, config, transport, 14, "ana@example.com")
    config = replace(config, sendgrid=replace(config.sendgrid, timeout_seconds=0.3, max_attempts=1))
    with SendGridTestServer(api_key="SG.sunset") as server:
        env = {"SENDGRID_API_KEY": "SG.sunset", "SENDGRID_API_HOST": server.url}
        sendgrid = SendGridTransport(config, env=env, sleep=lambda _: None)
        # The run's first request is the reconfirm email: SendGrid takes it, answers too late.
        server.script(Fault("slow", delay=1.0))
        lines = run_day(db, config, sendgrid, 14)
        run_day(db, config, sendgrid, 15)
        reconfirms = [b for b in server.accepted_bodies() if b["subject"].startswith("Still want")]

    assert len(reconfirms) == 1
    [line] = [line for line in lines if line.startswith("sunset daily")]
    assert "may or may not have left" in line
    [newsletter] = digest_status(db, config, START + timedelta(days=15)).newsletters
    assert "1 reader(s) asked and not answered yet (1 of them unknown" in newsletter.sunset


def test_a_run_killed_between_claiming_and_sending_a_reconfirm_leaves_it_visible_and_unsent(
    db, config, transport
):
    from digest.readers.subscriptions import claim_reconfirm
    from digest.status import digest_status

    ana = reader(db, "ana@example.com")
    silent_weeks(db, config, transport, 14, "ana@example.com")
    # What a kill -9 right after the claim's commit leaves behind.
    assert claim_reconfirm(db, ana, "daily", START + timedelta(days=14))

    run_day(db, config, transport, 14)

    assert asks(config) == []
    [newsletter] = digest_status(db, config, START + timedelta(days=14, hours=1)).newsletters
    assert "1 reader(s) asked and not answered yet (1 of them unknown" in newsletter.sunset
