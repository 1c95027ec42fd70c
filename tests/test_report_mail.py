"""The editors' report by mail: the morning after each edition, once per editor, PNG charts
inline, through the real SendGrid transport against the test server (the world of test_events)
and through the outbox, and what `digest run` says of it."""

from __future__ import annotations

import base64
import dataclasses
import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest

from digest.config import ReportSettings
from digest.delivery.transports.outbox import OutboxTransport
from digest.delivery.transports.sendgrid import SendGridTransport
from digest.errors import ConfigError
from digest.feedback.mailing import mail_reports, mailed, report_due
from digest.run import run_due

import test_events
from helpers import make_config
from test_events import API_KEY, post_all, script_the_day, send, sendgrid_config

FIXTURES = ("no_proxy", "readers", "sendgrid", "webhook")
globals().update({name: getattr(test_events, name) for name in FIXTURES})
EDITORS = ("desk@news.test", "chief@news.test")
# The edition of 2026-11-26 (UTC) is mailed from 08:00 UTC the day after.
MORNING_AFTER = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


@pytest.fixture
def config(tmp_path):
    """test_events' config, with editors to mail the report to."""
    return sendgrid_config(tmp_path, report={"mail_to": list(EDITORS)})


@pytest.fixture
def transport(config, sendgrid):
    env = {"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": sendgrid.url}
    return SendGridTransport(config, env=env, sleep=lambda _: None)


@pytest.fixture
def the_day(db, config, transport, sendgrid, webhook, readers):
    script_the_day(sendgrid)
    send(db, config, transport)
    post_all(db, sendgrid)
    sendgrid.clear()


def report_bodies(sendgrid) -> list[dict]:
    return [body for body in sendgrid.accepted_bodies() if body.get("categories") == ["report"]]


def test_the_report_is_not_mailed_before_the_morning_after(db, config, transport, the_day):
    assert mail_reports(db, config, transport, MORNING_AFTER - timedelta(minutes=1)) == []
    assert report_due(db, config.newsletter("daily"), 8, MORNING_AFTER) == MORNING_AFTER.date() - (
        timedelta(days=1)
    )


def test_each_editor_gets_the_report_once_with_its_charts_as_inline_pngs(
    db, config, transport, sendgrid, the_day
):
    lines = mail_reports(db, config, transport, MORNING_AFTER)
    assert lines == [("report of daily 2026-11-26: mailed to 2 editor(s)", False)]
    bodies = report_bodies(sendgrid)
    assert sorted(b["personalizations"][0]["to"][0]["email"] for b in bodies) == sorted(EDITORS)
    body = bodies[0]
    assert body["subject"] == "Report: Test Daily, the edition of 2026-11-26"
    html = next(c["value"] for c in body["content"] if c["type"] == "text/html")
    text = next(c["value"] for c in body["content"] if c["type"] == "text/plain")
    assert "unique opens 4 (people 3, Apple proxy only 1), unique clicks by people 2" in text
    cids = re.findall(r'<img src="cid:([^"]+)" alt="([^"]+)"', html)
    assert [cid for cid, _ in cids] == [
        f"chart-{key}@digest" for key in ("funnel", "hours", "stories", "health", "rates")
    ]
    assert all(alt.strip() for _, alt in cids) and "<svg" not in html
    attachments = {a["content_id"]: a for a in body["attachments"]}
    assert set(attachments) == {cid for cid, _ in cids}
    for attachment in attachments.values():
        assert attachment["disposition"] == "inline" and attachment["type"] == "image/png"
        assert base64.b64decode(attachment["content"]).startswith(b"\x89PNG")
    assert mailed(db, "daily", "2026-11-26") == dict.fromkeys(EDITORS, "sent")


def test_a_second_run_that_morning_mails_nothing(db, config, transport, sendgrid, the_day):
    mail_reports(db, config, transport, MORNING_AFTER)
    assert mail_reports(db, config, transport, MORNING_AFTER + timedelta(minutes=5)) == []
    assert len(report_bodies(sendgrid)) == 2


def test_a_failed_send_is_tried_again_by_the_next_run_for_that_editor_only(
    db, config, transport, sendgrid, the_day
):
    sendgrid.fail_when(
        lambda body: body["personalizations"][0]["to"][0]["email"] == EDITORS[1], 400
    )
    [(line, failed)] = mail_reports(db, config, transport, MORNING_AFTER)
    assert failed and "mailed to 1 editor(s); FAILED for chief@news.test" in line
    assert mailed(db, "daily", "2026-11-26") == {EDITORS[0]: "sent", EDITORS[1]: "failed"}
    sendgrid.clear()
    [(again, failed)] = mail_reports(db, config, transport, MORNING_AFTER + timedelta(minutes=5))
    assert (again, failed) == ("report of daily 2026-11-26: mailed to 1 editor(s)", False)
    assert [b["personalizations"][0]["to"][0]["email"] for b in report_bodies(sendgrid)] == [
        EDITORS[1]
    ]


def test_a_mail_a_stopped_run_left_sending_is_reported_and_not_sent_again(
    db, config, transport, sendgrid, the_day
):
    mail_reports(db, config, transport, MORNING_AFTER)
    db.execute("UPDATE report_mails SET status = 'sending' WHERE address = ?", [EDITORS[0]])
    sendgrid.clear()
    [(line, failed)] = mail_reports(db, config, transport, MORNING_AFTER + timedelta(minutes=5))
    assert not failed
    assert line == (
        "report of daily 2026-11-26: nothing to mail; 1 left unknown by a stopped run, "
        "not sent again: desk@news.test"
    )
    assert report_bodies(sendgrid) == []


def test_an_edition_whose_morning_after_is_long_past_is_not_mailed_late(
    db, config, transport, sendgrid, the_day
):
    assert mail_reports(db, config, transport, MORNING_AFTER + timedelta(days=3)) == []
    assert report_bodies(sendgrid) == []


def test_no_mail_to_mails_nothing(db, config, transport, sendgrid, the_day):
    quiet = dataclasses.replace(config, report=ReportSettings())
    assert mail_reports(db, quiet, transport, MORNING_AFTER) == []


def test_digest_run_mails_the_report_through_the_outbox(db, tmp_path, the_day, config):
    outbox = dataclasses.replace(config, transport="outbox")
    report = run_due(db, outbox, MORNING_AFTER, transport=OutboxTransport(outbox))
    assert "report of daily 2026-11-26: mailed to 2 editor(s)" in report.lines
    eml = (outbox.outbox_dir / "reports" / "desk@news.test.eml").read_bytes()
    message = message_from_bytes(eml, policy=policy.default)
    images = [p for p in message.walk() if p.get_content_type() == "image/png"]
    assert len(images) == 5 and all(p["Content-ID"].startswith("<chart-") for p in images)
    html = message.get_body(("html",)).get_content()
    assert html.count('src="cid:chart-') == 5


def test_an_editor_address_that_is_not_one_is_refused_by_name(tmp_path):
    with pytest.raises(
        ConfigError, match=r"report\.mail_to 'desk at news' in .* is not an address"
    ):
        make_config(tmp_path, report={"mail_to": ["desk at news"]})
    with pytest.raises(ConfigError, match=r"report\.mail_hour in .* must be at most 23"):
        make_config(tmp_path, report={"mail_hour": 25})


def test_a_report_that_fails_the_digests_checks_is_not_sent_and_the_run_says_why(
    db, config, transport, sendgrid, the_day
):
    # The most clicked story's link, now plain http: no digest may carry it, nor the report.
    db.execute("UPDATE stories SET url = 'http://news.test/comet' WHERE title LIKE 'Comet%'")
    [(line, failed)] = mail_reports(db, config, transport, MORNING_AFTER)
    assert failed and line.startswith("report of daily 2026-11-26: FAILED: the report's email")
    assert "http://news.test/comet" in line
    assert report_bodies(sendgrid) == []
    assert mailed(db, "daily", "2026-11-26") == dict.fromkeys(EDITORS, "failed")
