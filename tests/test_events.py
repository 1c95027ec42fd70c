"""What came of a send, end to end over real HTTP: the SendGrid test server accepts the mail, then
posts signed event batches to the webhook of the real app; statuses, audiences and reports follow.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from digest.cli import cli
from digest.clock import utcnow
from digest.delivery.ledger import edition_counts
from digest.delivery.send import send_newsletter
from digest.delivery.transports.sendgrid import SendGridTransport
from digest.edition.render import add_story_id
from digest.feedback.events import pending_posts, process_pending, store_post
from digest.feedback.report import edition_report
from digest.feedback.webhook import KEYS_VARIABLE
from digest.readers.privacy import forget
from digest.readers.subscribers import add_subscriber, find_subscriber
from digest.readers.subscriptions import set_subscription, subscriptions_of
from digest.run import run_due
from digest.status import digest_status, unknown_deliveries
from digest.web import create_app

from helpers import EDITION_TIME, add_stories, make_config, story
from sendgrid_server import Fault, SendGridTestServer, make_webhook_key

NOW = EDITION_TIME + timedelta(minutes=2)
NEXT_DAY = NOW + timedelta(days=1)
API_KEY = "SG.test-key"
READERS = [f"reader{n}@example.com" for n in range(8)]


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def sendgrid_config(tmp_path, **sections):
    return make_config(
        tmp_path,
        transport={"kind": "sendgrid", "secret_key": "test-secret"},
        sendgrid={"batch_size": 3, "timeout_seconds": 1.0},
        **sections,
    )


@pytest.fixture
def config(tmp_path):
    return sendgrid_config(tmp_path)


@pytest.fixture
def sendgrid():
    with SendGridTestServer(api_key=API_KEY) as running:
        yield running


@pytest.fixture
def transport(config, sendgrid):
    env = {"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": sendgrid.url}
    return SendGridTransport(config, env=env, sleep=lambda _: None)


@pytest.fixture
def webhook(config, transport, sendgrid):
    """The readers' app on a real port, with the test server posting its events to it."""
    private, public = make_webhook_key()
    app = create_app(config, transport, env={KEYS_VARIABLE: public})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    sendgrid.send_events_to(f"http://127.0.0.1:{server.port}/webhooks/sendgrid", private)
    yield
    server.shutdown()
    thread.join()


@pytest.fixture
def readers(db):
    add_stories(db, story(1, title="Tram runs all night"), story(2, title="Comet seen at noon"))
    return [add_subscriber(db, address, f"Reader {n}").id for n, address in enumerate(READERS)]


def send(db, config, transport, now=NOW):
    return send_newsletter(db, config, None, now, transport=transport)


def processed(db) -> None:
    """Wait until the app has processed every stored post (it does so after answering)."""
    deadline = time.monotonic() + 30
    while pending_posts(db) or db.execute("SELECT 1 FROM leases WHERE name = 'events'").fetchone():
        assert time.monotonic() < deadline, "the webhook posts were never processed"
        process_pending(db)
        time.sleep(0.02)


def post_all(db, sendgrid, **options) -> None:
    assert all(status == 204 for status in sendgrid.post_events(**options))
    processed(db)


def address_status(db, address: str) -> str:
    return find_subscriber(db, address).status


def state_of(db, address: str) -> str | None:
    row = db.execute(
        """SELECT s.state FROM delivery_states s JOIN deliveries d ON d.id = s.delivery_id
           WHERE d.email = ? ORDER BY d.id DESC""",
        [address],
    ).fetchone()
    return row[0] if row else None


def script_the_day(sendgrid) -> None:
    """A day at SendGrid: deliveries, two hard bounces, a block, opens by people and by Apple's
    proxy, clicks, a spam report and an unsubscribe."""
    script = {
        0: ("processed", "delivered", "open", "click", "click:2", "click"),
        1: ("processed", "delivered", "machine_open"),
        2: ("processed", "bounce"),
        3: ("processed", "late_bounce"),
        4: ("processed", "blocked"),
        5: ("processed", "delivered", "machine_open", "open", "spamreport"),
        6: ("processed", "delivered", "open", "click:2", "unsubscribe"),
        7: ("processed", "deferred"),
    }
    for n, kinds in script.items():
        sendgrid.script_events(READERS[n], *kinds)


def test_a_hard_bounce_marks_the_address_bounced_with_reason_and_event_in_the_audit(
    db, config, transport, sendgrid, webhook, readers
):
    sendgrid.script_events(READERS[2], "processed", "bounce")
    send(db, config, transport)
    post_all(db, sendgrid)
    assert address_status(db, READERS[2]) == "bounced"
    detail = db.execute(
        "SELECT detail FROM audit WHERE action = 'provider event' AND subscriber_id = ?",
        [readers[2]],
    ).fetchone()[0]
    event_id = next(e["sg_event_id"] for e in sendgrid.posted_events if e["event"] == "bounce")
    assert detail.startswith("hard bounce 5.1.1 550 5.1.1 The email account")
    assert "(Invalid Address)" in detail and f"[event {event_id} at " in detail


def test_blocks_and_deferrals_are_recorded_but_suppress_no_one(
    db, config, transport, sendgrid, webhook, readers
):
    sendgrid.script_events(READERS[4], "processed", "blocked")
    sendgrid.script_events(READERS[7], "processed", "deferred")
    send(db, config, transport)
    post_all(db, sendgrid)
    assert (state_of(db, READERS[4]), state_of(db, READERS[7])) == ("blocked", "deferred")
    assert address_status(db, READERS[4]) == address_status(db, READERS[7]) == "active"


def test_a_spam_report_marks_the_address_complained_for_every_newsletter(
    db, config, transport, sendgrid, webhook, readers
):
    set_subscription(db, readers[5], "weekly", "active", "cli")
    sendgrid.script_events(READERS[5], "processed", "delivered", "spamreport")
    send(db, config, transport)
    post_all(db, sendgrid)
    assert address_status(db, READERS[5]) == "complained"
    assert state_of(db, READERS[5]) == "complained"


def test_an_unsubscribe_event_ends_the_subscription_as_one_click_does(
    db, config, transport, sendgrid, webhook, readers
):
    set_subscription(db, readers[6], "weekly", "active", "cli")
    sendgrid.script_events(READERS[6], "processed", "delivered", "unsubscribe")
    send(db, config, transport)
    post_all(db, sendgrid)
    assert subscriptions_of(db, readers[6]) == {"daily": "unsubscribed", "weekly": "active"}
    assert address_status(db, READERS[6]) == "active"


@pytest.mark.parametrize(
    ("reason", "address", "daily"),
    [
        ("Bounced Address", "bounced", "active"),
        ("Spam Reporting Address", "complained", "active"),
        ("Unsubscribed Address", "unsubscribed", "unsubscribed"),
        ("Invalid", "active", "active"),
    ],
)
def test_a_drop_for_sendgrids_own_lists_brings_our_status_in_line(
    db, config, transport, sendgrid, webhook, readers, reason, address, daily
):
    sendgrid.script_events(READERS[1], f"dropped:{reason}")
    send(db, config, transport)
    post_all(db, sendgrid)
    assert state_of(db, READERS[1]) == "dropped"
    assert address_status(db, READERS[1]) == address
    assert subscriptions_of(db, readers[1])["daily"] == daily


def test_the_next_days_audience_leaves_out_bounced_and_complained_but_not_blocked(
    db, config, transport, sendgrid, webhook, readers
):
    script_the_day(sendgrid)
    send(db, config, transport)
    post_all(db, sendgrid, order="shuffled")
    add_stories(db, story(1, at=EDITION_TIME + timedelta(days=1), title="Next day"))
    sendgrid.clear()
    send(db, config, transport, NEXT_DAY)
    gone = {READERS[2], READERS[3], READERS[5], READERS[6]}
    assert sorted(sendgrid.recipients()) == sorted(set(READERS) - gone)


def test_duplicates_with_new_ids_and_repeated_posts_are_counted_once(
    db, config, transport, sendgrid, webhook, readers
):
    script_the_day(sendgrid)
    send(db, config, transport)
    post_all(db, sendgrid)
    before = edition_report(db, config)["total"]
    first = list(sendgrid.posted_events)
    post_all(db, sendgrid, events=first, new_ids=True)
    post_all(db, sendgrid, events=first)
    assert edition_report(db, config)["total"] == before
    assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == len(first)
    opens = db.execute("SELECT SUM(human_opens + machine_opens) FROM engagement").fetchone()[0]
    assert opens == sum(1 for e in first if e["event"] in ("open", "click"))


def test_out_of_order_and_late_events_never_move_a_delivery_back(
    db, config, transport, sendgrid, webhook, readers
):
    sendgrid.script_events(READERS[0], "processed", "deferred", "delivered", "bounce")
    sendgrid.script_events(READERS[1], "processed", "deferred", "delivered", "open")
    send(db, config, transport)
    # The bounce arrives days late, after everything else, which arrives backwards.
    post_all(db, sendgrid, order="reversed", hold=lambda e: e["event"] == "bounce")
    assert (state_of(db, READERS[0]), state_of(db, READERS[1])) == ("delivered", "delivered")
    assert address_status(db, READERS[0]) == "active"
    post_all(db, sendgrid)
    assert state_of(db, READERS[0]) == "bounced"
    assert address_status(db, READERS[0]) == "bounced"
    post_all(db, sendgrid, events=[e for e in sendgrid.posted_events if e["event"] != "bounce"])
    assert (state_of(db, READERS[0]), state_of(db, READERS[1])) == ("bounced", "delivered")


def test_an_open_proves_delivery_when_the_delivered_event_is_missing(
    db, config, transport, sendgrid, webhook, readers
):
    sendgrid.script_events(READERS[0], "open")
    send(db, config, transport)
    post_all(db, sendgrid)
    assert state_of(db, READERS[0]) == "delivered"


def test_an_event_naming_a_delivery_of_another_address_changes_nothing(
    db, config, transport, sendgrid, webhook, readers
):
    send(db, config, transport)
    [event] = [e for e in sendgrid.pending_events() if e["email"] == READERS[0]][:1]
    forged = dict(event, event="spamreport", email="stranger@example.com")
    post_all(db, sendgrid, events=[forged])
    assert address_status(db, READERS[0]) == "active"
    assert db.execute("SELECT delivery_id FROM events").fetchall() == [(None,)]


def test_a_hard_bounce_for_an_internationalized_address_marks_its_reader(
    db, config, transport, sendgrid, webhook, readers
):
    add_subscriber(db, "ana@bücher.de", "Ana")
    sendgrid.script_events("ana@xn--bcher-kva.de", "processed", "bounce")
    send(db, config, transport)
    # SendGrid reports the address as it was sent: the domain in its ASCII form.
    assert "ana@xn--bcher-kva.de" in {e["email"] for e in sendgrid.pending_events()}
    post_all(db, sendgrid)
    assert address_status(db, "ana@bücher.de") == "bounced"
    assert state_of(db, "ana@bücher.de") == "bounced"


def test_a_complaint_about_mail_outside_our_batches_finds_an_internationalized_reader(
    db, config, transport, sendgrid, webhook, readers
):
    add_subscriber(db, "ana@bücher.de", "Ana")
    event = {
        "email": "Ana@XN--BCHER-KVA.de",
        "event": "spamreport",
        "timestamp": int(time.time()),
        "sg_event_id": "confirmation-complaint",
    }
    post_all(db, sendgrid, events=[event])
    assert address_status(db, "ana@bücher.de") == "complained"


def test_a_complaint_carrying_an_id_this_database_never_issued_changes_no_one(
    db, config, transport, sendgrid, webhook, readers
):
    # A staging database on the same SendGrid account mailed the same address.
    event = {
        "email": READERS[0],
        "event": "spamreport",
        "timestamp": int(time.time()),
        "sg_event_id": "staging-complaint",
        "digest_delivery": "999999",
        "digest_edition": "1",
    }
    post_all(db, sendgrid, events=[event])
    assert address_status(db, READERS[0]) == "active"
    assert db.execute("SELECT subscriber_id, detail FROM events").fetchall() == [
        (None, "spamreport")
    ]


def test_an_unsubscribe_carrying_another_readers_delivery_id_unsubscribes_no_one(
    db, config, transport, sendgrid, webhook, readers
):
    send(db, config, transport)
    [other] = [e for e in sendgrid.pending_events() if e["email"] == READERS[1]][:1]
    forged = dict(other, event="unsubscribe", email=READERS[0], sg_event_id="forged")
    post_all(db, sendgrid, events=[forged])
    assert subscriptions_of(db, readers[0])["daily"] == "active"
    assert subscriptions_of(db, readers[1])["daily"] == "active"


def test_a_bounce_of_mail_we_did_not_batch_still_marks_the_address(
    db, config, transport, sendgrid, webhook, readers
):
    # A confirmation email carries no custom_args: the address alone names the reader.
    send(db, config, transport)
    event = {
        "email": READERS[3].upper(),
        "event": "bounce",
        "type": "bounce",
        "timestamp": int(time.time()),
        "sg_event_id": "confirmation-bounce",
        "reason": "550 no such user",
    }
    post_all(db, sendgrid, events=[event])
    assert address_status(db, READERS[3]) == "bounced"


def test_a_late_unsubscribe_event_leaves_a_reader_who_came_back_since(
    db, config, transport, sendgrid, webhook, readers
):
    sendgrid.script_events(READERS[6], "processed", "delivered", "unsubscribe")
    send(db, config, transport)
    unsubscribe = [e for e in sendgrid.pending_events() if e["event"] == "unsubscribe"]
    for event in unsubscribe:
        event["timestamp"] -= 3 * 86400
    post_all(db, sendgrid)
    assert subscriptions_of(db, readers[6])["daily"] == "active"


# Unknown batches settle themselves


@pytest.mark.slow  # waits out a real timeout
def test_an_event_from_an_unknown_batch_settles_it_as_sent(
    db, config, transport, sendgrid, webhook, readers
):
    # The first batch's answer comes too late: the client gives up, SendGrid has it.
    sendgrid.script(Fault("slow", delay=1.5))
    report = send(db, config, transport)
    assert report.total("sending") == 3
    [unknown] = unknown_deliveries(db, "daily")
    assert "the webhook is silent about this edition (it has never received a post)" in (
        unknown.what
    )
    post_all(db, sendgrid)
    counts = edition_counts(db, report.editions[0].edition.id)
    assert (counts["sent"], counts["sending"]) == (8, 0)
    notes = db.execute(
        "SELECT DISTINCT error, provider_id IS NOT NULL FROM deliveries WHERE error IS NOT NULL"
    ).fetchall()
    assert notes == [("settled by event (processed)", 1)]
    assert unknown_deliveries(db, "daily") == []


def test_status_says_an_unknown_batch_probably_never_reached_sendgrid_when_others_were_heard(
    db, config, transport, sendgrid, webhook, readers
):
    # The connection drops before SendGrid answers, and it never took the request.
    sendgrid.script(Fault("drop"))
    report = send(db, config, transport)
    assert report.total("sending") == 3
    post_all(db, sendgrid)
    [unknown] = unknown_deliveries(db, "daily")
    assert "events for 2 other batch(es) of this edition and none for this one" in unknown.what
    assert "probably never reached SendGrid" in unknown.what
    assert unknown.command.endswith("--resend-unknown")


@pytest.mark.slow  # waits out a real timeout
def test_an_unknown_batch_put_back_in_the_queue_is_settled_before_it_goes_again(
    db, config, transport, sendgrid, webhook, readers
):
    sendgrid.script(Fault("slow", delay=1.5))
    report = send(db, config, transport)
    edition_id = report.editions[0].edition.id
    db.execute("UPDATE deliveries SET status = 'queued' WHERE status = 'sending'")
    post_all(db, sendgrid)
    assert edition_counts(db, edition_id)["queued"] == 0


# The report


def test_the_report_counts_the_day_per_variant_with_rates_on_delivered(
    db, config, transport, sendgrid, webhook, readers
):
    script_the_day(sendgrid)
    send(db, config, transport)
    post_all(db, sendgrid, order="shuffled")
    report = edition_report(db, config, "daily", "2026-11-26")
    assert report["edition"] == "2026-11-26"
    [variant] = report["variants"]
    assert (
        variant["numbers"]
        == report["total"]["numbers"]
        == {
            "sent": 8,
            "delivered": 4,
            "deferred": 1,
            "bounced": 2,
            "blocked": 1,
            "dropped": 0,
            "complaints": 1,
            "unsubscribes": 1,
            "opens": 4,
            "human_opens": 3,
            "machine_opens": 1,
            "clicks": 2,
            "machine_clicks": 0,
            "no_event_yet": 0,
        }
    )
    rates = report["total"]["rates"]
    assert (rates["opened"], rates["opened_by_people"], rates["clicked"]) == (1.0, 0.75, 0.5)
    assert rates["delivered_of_sent"] == 0.5 and rates["bounced_of_sent"] == 0.25


def test_the_report_counts_story_clicks_by_readers_and_the_story_id_on_the_link(
    db, config, transport, sendgrid, webhook, readers
):
    script_the_day(sendgrid)
    send(db, config, transport)
    post_all(db, sendgrid)
    # A story's URL changing since the send does not lose its clicks.
    db.execute("UPDATE stories SET url = url || '-moved'")
    stories = edition_report(db, config)["stories"]
    clicked = {s["title"]: (s["human_clicks"], s["machine_clicks"]) for s in stories}
    assert clicked == {"Comet seen at noon": (2, 0), "Tram runs all night": (1, 0)}


def test_the_report_says_how_complete_it_is(db, config, transport, sendgrid, webhook, readers):
    send(db, config, transport)
    silent = edition_report(db, config)["completeness"]
    assert silent["note"].startswith("no webhook events for this edition yet")
    post_all(db, sendgrid)
    heard = edition_report(db, config)["completeness"]
    assert heard["note"].startswith(f"events can still arrive until {heard['outcomes_final_at']}")
    later = edition_report(db, config, now=utcnow() + timedelta(days=5))["completeness"]
    assert later["note"].startswith("delivery outcomes are final")


def test_digest_report_prints_the_numbers_or_the_same_as_json(
    db, config, transport, sendgrid, webhook, readers, tmp_path, monkeypatch
):
    script_the_day(sendgrid)
    send(db, config, transport)
    post_all(db, sendgrid)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digest.toml").write_text(
        '[store]\npath = "digest.db"\n[newsletters.daily]\ntitle = "Test Daily"\n'
    )
    runner = CliRunner()
    text = runner.invoke(cli, ["report", "--last"])
    assert text.exit_code == 0, text.output
    assert text.output.startswith("Test Daily (daily), edition of 2026-11-26: 1 variant(s)")
    assert (
        "unique opens 4 (people 3, Apple proxy only 1), "
        "unique clicks by people 2 (+ machines only 0)" in text.output
    )
    data = json.loads(runner.invoke(cli, ["report", "2026-11-26", "--json"]).output)
    assert data["total"]["numbers"]["complaints"] == 1
    missing = runner.invoke(cli, ["report", "2026-11-20"])
    assert missing.exit_code == 1 and "daily has no edition on 2026-11-20" in missing.output


def test_digest_run_processes_posts_the_web_app_stored_but_never_processed(db, config, readers):
    event = {"email": READERS[1], "event": "spamreport", "timestamp": 1, "sg_event_id": "x"}
    store_post(db, json.dumps([event]).encode(), {}, utcnow())
    run = run_due(db, config, NOW - timedelta(hours=3), transport=None)  # type: ignore[arg-type]
    assert "events: 1 webhook post(s), 1 events, 1 new" in run.lines[0]
    assert pending_posts(db) == []
    assert address_status(db, READERS[1]) == "complained"


def test_status_tells_of_posts_stored_but_not_processed_and_why_one_failed(db, config, readers):
    event = {"email": READERS[1], "event": "delivered", "timestamp": 1, "sg_event_id": "y"}
    post = store_post(db, json.dumps([event]).encode(), {}, utcnow())
    # As the web app leaves a post whose processing raised: kept, with the reason.
    db.execute(
        "UPDATE webhook_posts SET note = 'processing failed: KeyError: x' WHERE id = ?", [post]
    )
    assert (
        f"webhook: 1 post(s) stored but not processed (post {post}: processing failed: KeyError: "
        "x; the log has the rest); `digest run` processes them, or `digest webhook discard ID` "
        "gives one up"
    ) in digest_status(db, config, NOW).lines()
    process_pending(db)
    assert not any(line.startswith("webhook:") for line in digest_status(db, config, NOW).lines())


def test_story_links_carry_the_story_id_and_a_feeds_own_is_replaced():
    assert add_story_id("https://news.test/a?x=1", 7) == "https://news.test/a?x=1&digest_story=7"
    assert add_story_id("https://news.test/a?digest_story=1", 7) == (
        "https://news.test/a?digest_story=7"
    )


def test_forgetting_a_reader_leaves_no_trace_of_them_in_the_events(
    db, config, transport, sendgrid, webhook, readers
):
    sendgrid.script_events(READERS[0], "processed", "delivered", "open", "click")
    send(db, config, transport)
    bounce = {
        "email": READERS[0],
        "event": "bounce",
        "type": "bounce",
        "timestamp": int(time.time()),
        "sg_event_id": "confirmation-bounce",
        "reason": f"550 5.1.1 <{READERS[0]}>: Recipient address rejected",
    }
    stranger = dict(bounce, email="stranger@example.com", sg_event_id="s")
    stranger["reason"] = "550 5.1.1 <stranger@example.com>: Recipient address rejected"
    post_all(db, sendgrid)
    post_all(db, sendgrid, events=[bounce, stranger])
    forget(db, READERS[0])
    everything = json.dumps(
        [list(db.query(f"SELECT * FROM [{t}]")) for t in db.table_names()], default=str
    )
    assert READERS[0] not in everything and "stranger@example.com" not in everything


def test_processing_posts_leaves_the_connections_cache_as_it_was(db):
    # `digest run` processes posts, then sends on the same connection: a million readers'
    # batches must not fill the large cache that processing wanted (benchmarks/send.py).
    before = db.execute("PRAGMA cache_size").fetchone()[0]
    process_pending(db)
    assert db.execute("PRAGMA cache_size").fetchone()[0] == before


def test_rates_never_pass_100_percent_and_the_report_says_which_were_capped():
    from digest.feedback.report import over_base, rates

    numbers = dict.fromkeys(
        ["sent", "delivered", "bounced", "blocked", "opens", "human_opens", "clicks"], 0
    ) | {"sent": 20, "delivered": 10, "unsubscribes": 12, "complaints": 1}
    assert rates(numbers)["unsubscribed"] == 1.0
    assert rates(numbers)["complained"] == 0.1
    assert over_base(numbers) == ["unsubscribes (12) outnumber delivered (10)"]
