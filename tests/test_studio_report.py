"""The studio's report and reader pages over HTTP, after a real send: the SendGrid test server
accepts the mail and posts its signed events to the readers' app, as in test_events; the studio
then shows what `digest report` prints, and for each reader each edition they were sent, what
came of it and the exact email they got (links inert).
"""

from __future__ import annotations

import html
import re
from datetime import timedelta
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from digest.edition.personalize import personalize
from digest.feedback.report import edition_report, report_lines
from digest.readers.subscribers import add_subscriber
from digest.studio import create_studio
from digest.urls import ReaderLinks

import test_events
from helpers import add_stories, needs_chromium, served, story
from test_events import NOW, READERS, post_all, script_the_day, send

# The world of test_events, its fixtures as they are: the SendGrid config, the test server,
# the transport, the readers' app on a real port receiving the server's signed events.
config = test_events.config
no_proxy = test_events.no_proxy
readers = test_events.readers
sendgrid = test_events.sendgrid
transport = test_events.transport
webhook = test_events.webhook

AS_OF = NOW + timedelta(hours=2)


@pytest.fixture
def studio(config, transport):
    return create_studio(lambda: config, transport, now=AS_OF).test_client()


@pytest.fixture
def the_day(db, config, transport, sendgrid, webhook, readers):
    """The day of test_events sent, and every event of it received and processed."""
    script_the_day(sendgrid)
    send(db, config, transport)
    post_all(db, sendgrid, order="shuffled")


def total_cells(page: str) -> dict[str, int]:
    total = page[page.index('<tr class="report-total">') :]
    total = total[: total.index("</tr>")]
    return {k: int(v) for k, v in re.findall(r'<td data-number="(\w+)">(\d+)</td>', total)}


def test_the_report_page_prints_what_digest_report_prints(studio, db, config, the_day):
    answer = studio.get("/report", query_string={"newsletter": "daily", "last": "1"})
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    printed = html.unescape(re.search(r'<pre id="printed">(.*?)</pre>', page, re.S)[1])
    assert printed == "\n".join(report_lines(edition_report(db, config, "daily", None, AS_OF)))
    assert (
        "unique opens 4 (people 3, Apple proxy only 1), "
        "unique clicks by people 2 (+ machines only 0)" in printed
    )


def test_the_report_page_tables_the_same_numbers(studio, db, config, the_day):
    page = studio.get("/report", query_string={"edition": "2026-11-26"}).get_data(as_text=True)
    numbers = total_cells(page)
    assert numbers == edition_report(db, config, "daily", "2026-11-26", AS_OF)["total"]["numbers"]
    assert (numbers["sent"], numbers["delivered"], numbers["bounced"]) == (8, 4, 2)
    assert page.count('<tr class="report-variant"') == 1
    assert '<td data-rate="opened_by_people">by people 75.0%</td>' in page
    assert '<td data-rate="bounced_of_sent">bounced 25.0%</td>' in page
    assert re.search(
        r"Comet seen at noon</a> <small>story \d+</small></td>"
        r"<td>2</td><td>4</td><td>2</td><td>0</td>",
        page,
    )
    assert "events can still arrive until" in page


def test_report_json_is_the_data_of_digest_report_json(studio, db, config, the_day):
    body = studio.get("/report.json", query_string={"edition": "2026-11-26"}).get_json()
    assert body == edition_report(db, config, "daily", "2026-11-26", AS_OF)
    assert body["total"]["numbers"]["complaints"] == 1


def test_the_report_follows_events_that_arrive_later(db, config, transport, sendgrid, webhook):
    add_stories(db, story(1, title="Tram runs all night"))
    add_subscriber(db, "late@example.com", "Late")
    sendgrid.script_events("late@example.com", "processed", "delivered", "open")
    send(db, config, transport)
    client = create_studio(lambda: config, transport, now=AS_OF).test_client()
    assert total_cells(client.get("/report").get_data(as_text=True))["delivered"] == 0
    post_all(db, sendgrid)
    numbers = total_cells(client.get("/report").get_data(as_text=True))
    assert (numbers["delivered"], numbers["human_opens"]) == (1, 1)


def test_an_edition_with_no_sends_is_a_clear_404(studio, the_day):
    answer = studio.get("/report.json", query_string={"edition": "2026-11-20"})
    assert answer.status_code == 404
    assert (
        "daily has no edition on 2026-11-20; the last ones: 2026-11-26."
        in (answer.get_json()["error"]["message"])
    )
    page = studio.get("/report", query_string={"edition": "2026-11-20"})
    assert page.status_code == 404 and 'role="alert"' in page.get_data(as_text=True)


def test_a_bad_edition_or_both_edition_and_last_are_refused_with_the_reason(studio, the_day):
    bad = studio.get("/report.json", query_string={"edition": "yesterday"})
    assert bad.status_code == 422
    assert "EDITION 'yesterday' is not a date" in bad.get_json()["error"]["message"]
    both = studio.get("/report.json", query_string={"edition": "2026-11-26", "last": "1"})
    assert both.status_code == 422
    assert both.get_json()["error"]["message"] == "Give edition=YYYY-MM-DD or last, not both."


def test_the_front_page_links_to_the_report(studio, the_day):
    page = studio.get("/", query_string={"newsletter": "daily"}).get_data(as_text=True)
    link = re.search(r'<a href="(/report\?[^"]*)">What came of the last edition</a>', page)
    assert link
    assert studio.get(html.unescape(link[1])).status_code == 200


def row_of(page: str, field: str) -> str:
    found = re.search(rf'<td data-field="{field}">(.*?)</td>', page, re.S)
    assert found, field
    return html.unescape(found.group(1))


def reader_page(studio, email: str) -> str:
    answer = studio.get(f"/readers/{quote(email)}")
    assert answer.status_code == 200
    return answer.get_data(as_text=True)


def test_the_reader_page_shows_subscriptions_zone_topics_and_each_edition(the_day, studio):
    page = reader_page(studio, READERS[0])
    assert "daily: active" in page
    assert '<dd id="reader-zone">UTC</dd>' in page
    assert row_of(page, "status").startswith("sent")
    assert row_of(page, "state") == "delivered"
    assert row_of(page, "opened") == "by a person"
    assert row_of(page, "clicks") == "3"
    assert "<strong>Tram runs all night</strong>" in row_of(page, "stories")


def test_the_reader_page_tells_apple_proxy_opens_and_bounces_apart(the_day, studio):
    assert row_of(reader_page(studio, READERS[1]), "opened") == "only by Apple's proxy"
    bounced = reader_page(studio, READERS[2])
    assert row_of(bounced, "state") == "bounced"
    assert row_of(bounced, "opened") == "no"


def test_a_delivery_opens_as_exactly_the_email_the_reader_got_with_inert_links(
    the_day, studio, config, sendgrid, db
):
    [(body, mine)] = [
        (body, p)
        for body in sendgrid.accepted_bodies()
        for p in body["personalizations"]
        if p["to"][0]["email"] == READERS[0]
    ]
    sent = {
        kind: personalize(c["value"], mine["substitutions"])
        for c in body["content"]
        for kind in ("html", "txt")
        if c["type"] == ("text/html" if kind == "html" else "text/plain")
    }
    [delivery_id] = db.execute(
        "SELECT d.id FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
        "WHERE s.email = ?",
        [READERS[0]],
    ).fetchone()
    inert = ReaderLinks(config, "daily").preview_url()
    own_link = mine["substitutions"]["%%unsubscribe_url%%"]
    client = studio
    for kind in ("html", "txt"):
        answer = client.get(f"/deliveries/{delivery_id}/email.{kind}")
        assert answer.status_code == 200
        shown = answer.get_data(as_text=True)
        assert own_link not in shown
        assert shown == sent[kind].replace(own_link, inert)
    assert "Hello Reader 0," in client.get(f"/deliveries/{delivery_id}/email.txt").text


def test_the_search_box_finds_readers_by_part_of_their_address(the_day, studio):
    client = studio
    page = client.get("/readers?q=reader1").get_data(as_text=True)
    assert f'href="/readers/{quote(READERS[1])}"' in page
    assert READERS[2] not in page
    exact = client.get(f"/readers?q={READERS[3]}")
    assert exact.status_code == 302 and exact.location.endswith(f"/readers/{quote(READERS[3])}")
    assert "No reader" in client.get("/readers?q=nobody%25").get_data(as_text=True)


def test_an_unknown_reader_is_a_clear_404(studio, db):
    answer = studio.get("/readers/nobody@example.com")
    assert answer.status_code == 404
    assert "nobody@example.com" in answer.get_data(as_text=True)


@needs_chromium
def test_in_chromium_an_editor_finds_a_reader_and_opens_the_email_they_got(
    the_day, config, transport, browser
):
    with served(create_studio(lambda: config, transport, now=AS_OF)) as url:
        page = browser.new_page()
        page.goto(url + "/")
        page.get_by_label("Find a reader").fill(READERS[0])
        page.get_by_role("button", name="Find").click()
        expect(page.locator("h1")).to_contain_text(READERS[0])
        expect(page.locator('td[data-field="opened"]')).to_have_text("by a person")
        page.locator("a.open-email").first.click()
        page.wait_for_url("**/deliveries/*/email.html")
        expect(page.locator("body")).to_contain_text("Tram runs all night")
        page.close()
