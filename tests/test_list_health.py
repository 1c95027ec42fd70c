"""List health over simulated weeks of real sends: the SendGrid test server takes every edition
and posts signed events to the real webhook; cold readers are asked once, then lapse; the keep
button (a POST) keeps; a GET of its link, Apple's proxy and scanners keep no one.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server
from werkzeug.test import Client

from digest.cli import cli
from digest.delivery.transports.outbox import OutboxTransport
from digest.delivery.transports.sendgrid import SendGridTransport
from digest.feedback.events import pending_posts, process_pending
from digest.feedback.list_health import list_health, readers_by_engagement
from digest.feedback.webhook import KEYS_VARIABLE
from digest.readers.subscribers import add_subscriber, find_subscriber
from digest.readers.subscriptions import set_subscription, subscriptions_of
from digest.run import run_due
from digest.status import digest_status
from digest.web import create_app

from helpers import add_stories, make_config, story
from sendgrid_server import SendGridTestServer, make_webhook_key

pytestmark = pytest.mark.slow

API_KEY = "SG.test-key"
# In the past of the machine's clock, which stamps subscriptions and keeps: the simulated
# editions all come after the readers subscribed and before any button is pressed.
START = datetime(2026, 3, 2, 7, 5, tzinfo=UTC)
SUBSCRIBED = "2026-01-01T00:00:00Z"
POLICY = {"after_days": 14, "min_editions": 10, "grace_days": 7}
HUMAN, APPLE, SILENT, KEEPER, GETTER, LATE = (
    f"{who}@example.com" for who in ("human", "apple", "silent", "keeper", "getter", "late")
)
SCRIPTS = {
    HUMAN: ("processed", "delivered", "machine_open", "open"),
    APPLE: ("processed", "delivered", "machine_open"),
    SILENT: ("processed", "delivered"),
    KEEPER: ("processed", "delivered", "machine_open"),
    GETTER: ("processed", "delivered"),
    LATE: ("processed", "delivered", "click"),
}


class World:
    """A newsroom, the SendGrid test server, the readers' app with its webhook, and a clock."""

    def __init__(self, tmp_path, sendgrid, *, webhook: bool = True):
        self.config = make_config(
            tmp_path,
            newsletter={"sunset": POLICY},
            transport={"kind": "sendgrid", "secret_key": "test-secret"},
        )
        env = {"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": sendgrid.url}
        self.transport = SendGridTransport(self.config, env=env, sleep=lambda _: None)
        private, public = make_webhook_key()
        self.app = create_app(self.config, self.transport, env={KEYS_VARIABLE: public})
        from digest.store import open_db

        self.db = open_db(self.config.db_path)
        self.sendgrid = sendgrid
        self.now = START
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self.thread.start()
        if webhook:
            sendgrid.send_events_to(
                f"http://127.0.0.1:{self.server.port}/webhooks/sendgrid",
                private,
                clock=lambda: self.now.timestamp(),
            )
        self.held: list[dict] = []

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join()
        self.db.close()

    def add_readers(self, scripts: dict[str, tuple[str, ...]]) -> None:
        for address, kinds in scripts.items():
            add_subscriber(self.db, address)
            self.sendgrid.script_events(address, *kinds)
        # Readers who subscribed before the weeks simulated here.
        self.db.execute("UPDATE subscriptions SET updated_at = ?, created_at = ?", [SUBSCRIBED] * 2)

    def day(self, n: int, hold=None) -> list[str]:
        """Day n: a story, `digest run` at 07:05, then SendGrid posts the day's events."""
        self.now = START + timedelta(days=n)
        add_stories(self.db, story(1, at=self.now, title=f"Day {n}"))
        report = run_due(self.db, self.config, self.now, transport=self.transport)
        assert not report.failed, report.lines
        self.post(hold)
        return report.lines

    def post(self, hold=None) -> None:
        if self.sendgrid._webhook_url is None:
            return
        statuses = self.sendgrid.post_events(hold=hold)
        assert all(status == 204 for status in statuses), statuses
        deadline = time.monotonic() + 30
        while (
            pending_posts(self.db)
            or self.db.execute("SELECT 1 FROM leases WHERE name = 'events'").fetchone()
        ):
            assert time.monotonic() < deadline
            process_pending(self.db)
            time.sleep(0.02)

    def status(self, address: str) -> str:
        subscriber = find_subscriber(self.db, address)
        return subscriptions_of(self.db, subscriber.id)["daily"]

    def asks(self, address: str) -> list[dict]:
        """The reconfirm emails SendGrid accepted for `address`."""
        return [
            body
            for body in self.sendgrid.accepted_bodies()
            if body.get("categories") == ["reconfirm"]
            and body["personalizations"][0]["to"][0]["email"] == address
        ]

    def digests(self, address: str) -> int:
        return sum(
            1
            for body in self.sendgrid.accepted_bodies()
            if body.get("categories") != ["reconfirm"]
            for p in body["personalizations"]
            if p["to"][0]["email"] == address
        )

    def keep_path(self, address: str) -> str:
        [ask] = self.asks(address)
        html = next(c["value"] for c in ask["content"] if c["type"] == "text/html")
        [link] = {m for m in re.findall(r'href="([^"]+)"', html) if "/keep/" in m}
        return urlsplit(link).path


@pytest.fixture
def sendgrid():
    with SendGridTestServer(api_key=API_KEY) as running:
        yield running


@pytest.fixture
def world(tmp_path, sendgrid, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    running = World(tmp_path, sendgrid)
    yield running
    running.close()


def test_weeks_of_sends_ask_the_silent_once_then_lapse_them_while_readers_and_keepers_stay(world):
    world.add_readers(SCRIPTS)
    late_click = lambda event: event["email"] == LATE and event["event"] == "click"  # noqa: E731
    # Day 0 the late reader clicks, but SendGrid's post of it is held back for weeks.
    for n in range(14):
        world.day(n, hold=late_click)
        assert not any(world.asks(a) for a in SCRIPTS), f"asked on day {n}"
    world.sendgrid.script_events(LATE, "processed", "delivered")
    # Day 14: ten editions and fourteen days without a human open or click.
    world.day(14, hold=late_click)
    for address in (APPLE, SILENT, KEEPER, GETTER, LATE):
        assert len(world.asks(address)) == 1, address
    assert world.asks(HUMAN) == []
    app = Client(world.app)
    # A scanner (or the reader) opening the keep link changes nothing; only the button does.
    for method in ("GET", "HEAD"):
        assert app.open(world.keep_path(GETTER), method=method).status_code == 200
    page = app.get(world.keep_path(KEEPER)).get_data(as_text=True)
    assert 'method="post"' in page and "Yes, keep sending it" in page
    world.day(15, hold=late_click)
    assert app.post(world.keep_path(KEEPER)).status_code == 200
    for n in range(16, 21):
        world.day(n, hold=late_click)
        assert world.status(GETTER) == "active"
    # Day 21: the grace is over.
    world.day(21, hold=late_click)
    for address in (APPLE, SILENT, GETTER, LATE):
        assert world.status(address) == "lapsed", address
    assert world.status(KEEPER) == world.status(HUMAN) == "active"
    sent_before = {a: world.digests(a) for a in SCRIPTS}
    world.day(22, hold=late_click)
    assert world.digests(SILENT) == sent_before[SILENT]
    assert world.digests(KEEPER) == sent_before[KEEPER] + 1
    assert world.digests(HUMAN) == sent_before[HUMAN] + 1
    # The late reader's click of day 0 finally arrives: they were reading after all.
    world.post()
    world.day(23)
    assert world.status(LATE) == "active"
    assert world.digests(LATE) == sent_before[LATE] + 1
    for n in range(24, 30):
        world.day(n)
    # Asked once each, never twice, whatever happened since.
    for address in SCRIPTS:
        assert len(world.asks(address)) == (0 if address == HUMAN else 1), address
    assert world.status(SILENT) == "lapsed"


def test_list_health_adds_up_against_the_subscriptions_table_and_counts_each_day(world):
    world.add_readers({HUMAN: SCRIPTS[HUMAN], SILENT: SCRIPTS[SILENT], APPLE: SCRIPTS[APPLE]})
    left = add_subscriber(world.db, "left@example.com")
    set_subscription(world.db, left.id, "daily", "unsubscribed", "cli")
    runner_env = {"DIGEST_DB": str(world.config.db_path)}
    for n in range(23):
        world.day(n)
    health = list_health(world.db, world.config, None, world.now)
    counts = health["counts"]
    total = world.db.execute(
        "SELECT COUNT(*) FROM subscriptions WHERE newsletter = 'daily'"
    ).fetchone()[0]
    states = ("active", "pending", "lapsed", "bounced", "complained", "unsubscribed")
    assert counts["subscriptions"] == total == sum(counts[s] for s in states) == 4
    assert counts["lapsed"] == 2 and counts["unsubscribed"] == 1
    assert counts["engaged"] == 1 and counts["active"] == 1
    assert [d["day"] for d in health["days"]] == [
        (START + timedelta(days=n)).date().isoformat() for n in range(23)
    ]
    day14 = health["days"][14]
    assert (day14["asked"], day14["cold"], day14["lapsed"]) == (2, 0, 0)
    assert health["days"][13]["cold"] == 0
    assert health["days"][21]["lapsed"] == 2
    # The command line prints the same, and filters the list.
    config_file = world.config.source_path
    config_file.write_text(
        "[site]\nurl = 'https://news.test'\n[transport]\nsecret_key = 'test-secret'\n"
        "[newsletters.daily]\ntitle = 'Test Daily'\n"
        "[newsletters.daily.sunset]\nafter_days = 14\nmin_editions = 10\ngrace_days = 7\n",
        encoding="utf-8",
    )
    runner = CliRunner(env=runner_env)
    at = world.now.isoformat()
    out = runner.invoke(cli, ["--config", str(config_file), "report", "--list", "--now", at])
    assert out.exit_code == 0, out.output
    assert "subscriptions 4 = active 1 + pending 0 + lapsed 2" in out.output
    data = json.loads(
        runner.invoke(
            cli, ["--config", str(config_file), "report", "--list", "--json", "--now", at]
        ).output
    )
    assert data["counts"] == counts
    listing = ["--config", str(config_file), "subscribers", "list", "--newsletter", "daily"]
    lapsed = runner.invoke(cli, [*listing, "--status", "lapsed"]).output
    assert sorted(line.split("\t")[0] for line in lapsed.splitlines()) == [APPLE, SILENT]
    engaged = runner.invoke(cli, [*listing, "--engagement", "engaged", "--now", at]).output
    assert [line.split("\t")[0] for line in engaged.splitlines()] == [HUMAN]
    cold = runner.invoke(cli, [*listing, "--engagement", "cold", "--now", at])
    assert cold.exit_code == 0 and cold.output == ""


def test_the_cold_are_listed_before_they_are_asked(world):
    world.add_readers({HUMAN: SCRIPTS[HUMAN], SILENT: SCRIPTS[SILENT]})
    for n in range(14):
        world.day(n)
    # Fourteen editions, but their silence is not fourteen days long yet...
    assert readers_by_engagement(world.db, world.config, "daily", "cold", world.now) == []
    # ...until the next morning, just before the run that asks them.
    morning = START + timedelta(days=14, minutes=-1)
    silent, human = (find_subscriber(world.db, a).id for a in (SILENT, HUMAN))
    assert readers_by_engagement(world.db, world.config, "daily", "cold", morning) == [silent]
    assert readers_by_engagement(world.db, world.config, "daily", "engaged", morning) == [human]
    assert readers_by_engagement(world.db, world.config, "daily", "asked", morning) == []
    world.day(14)
    assert readers_by_engagement(world.db, world.config, "daily", "asked", world.now) == [silent]


def test_a_reconfirm_email_that_bounces_leaves_the_reader_bounced_not_lapsed(world):
    world.add_readers({SILENT: SCRIPTS[SILENT]})
    for n in range(14):
        world.day(n)
    # The address died: its reconfirm email (day 14) bounces.
    world.sendgrid.script_events(SILENT, "processed", "bounce")
    world.day(14)
    assert len(world.asks(SILENT)) == 1
    assert find_subscriber(world.db, SILENT).status == "bounced"
    for n in range(15, 23):
        world.day(n)
    assert world.status(SILENT) == "active"  # its subscription; the address is bounced
    counts = list_health(world.db, world.config, None, world.now)["counts"]
    assert (counts["bounced"], counts["lapsed"], counts["asked"]) == (1, 0, 0)


def test_with_no_events_at_all_nobody_is_ever_asked_and_status_says_it_waits(tmp_path):
    config = make_config(tmp_path, newsletter={"sunset": POLICY})
    from digest.store import open_db

    db = open_db(config.db_path)
    transport = OutboxTransport(config)
    for address in (SILENT, APPLE):
        add_subscriber(db, address)
    db.execute("UPDATE subscriptions SET updated_at = ?", [SUBSCRIBED])
    for n in range(40):
        now = START + timedelta(days=n)
        add_stories(db, story(1, at=now))
        run_due(db, config, now, transport=transport)
    assert not (config.outbox_dir / "reconfirms").exists()
    assert {subscriptions_of(db, find_subscriber(db, a).id)["daily"] for a in (SILENT, APPLE)} == {
        "active"
    }
    [newsletter] = digest_status(db, config, now).newsletters
    assert newsletter.sunset.startswith("waiting for events")
    assert list_health(db, config, None, now)["sunset"].startswith("waiting for events")
    db.close()
