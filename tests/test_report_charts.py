"""The report's pictures: plain figures drawn by Vega-Lite on the server, and the figures read
from a real send whose signed events came back through the webhook (the world of test_events).
"""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.feedback import charts
from digest.feedback.figures import (
    edition_rates,
    list_health,
    report_figures,
    story_positions,
    zone_funnels,
)
from digest.feedback.report import NUMBERS, edition_report
from digest.studio import create_studio

import test_events
from test_events import NOW, post_all, script_the_day, send

# The world of test_events, its fixtures as they are (test_studio_report uses them too).
FIXTURES = ("config", "no_proxy", "readers", "sendgrid", "transport", "webhook")
globals().update({name: getattr(test_events, name) for name in FIXTURES})
AS_OF = NOW + timedelta(hours=2)
KEYS = ["funnel", "hours", "stories", "health", "rates"]


@pytest.fixture
def the_day(db, config, transport, sendgrid, webhook, readers):
    script_the_day(sendgrid)
    send(db, config, transport)
    post_all(db, sendgrid, order="shuffled")
    return edition_report(db, config, "daily", None, AS_OF)


def marks(svg: str) -> int:
    """The drawn marks of a Vega SVG: bars, symbols, lines (axes and legends are not marks)."""
    return len(re.findall(r'class="mark-(?:rect|symbol|line|text) role-mark(?! role-axis)', svg))


def test_the_funnel_per_zone_is_the_reports_numbers_with_blocks_among_the_bounces(the_day):
    rows = {row["stage"]: row["readers"] for row in zone_funnels(the_day)}
    total = the_day["total"]["numbers"]
    assert rows == {
        "Sent": total["sent"],
        "Delivered": total["delivered"],
        "Opened by people": total["human_opens"],
        "Apple proxy only": total["machine_opens"],
        "Clicked by people": total["clicks"],
        "Clicked by machines only": total["machine_clicks"],
        "Bounced": total["bounced"] + total["blocked"],
        "Complaints": total["complaints"],
    }
    assert (rows["Sent"], rows["Delivered"], rows["Bounced"]) == (8, 4, 3)


def test_the_stories_chart_draws_the_reports_per_story_rows(db, the_day):
    stories, expected = story_positions(the_day)
    rows = {row["story_id"]: row for row in the_day["stories"]}
    assert {s["story_id"] for s in stories} == set(rows)
    for s in stories:
        row = rows[s["story_id"]]
        assert s["position"] in row["positions"]
        assert (s["human_clicks"], s["impressions"], s["ctr"], s["expected_ctr"]) == (
            row["human_clicks"],
            row["impressions"],
            row["ctr"],
            row["expected_ctr"],
        )
        assert (s["against_slot"] == "above its place") == (row["lift"] > 1)
    # The curve is the one the report's expected click-through reads at each position.
    curve = {e["position"]: e["expected_ctr"] for e in expected}
    assert curve == {e["position"]: e["expected_ctr"] for e in the_day["expected_ctr_by_position"]}
    for s in stories:
        if len(rows[s["story_id"]]["positions"]) == 1:
            assert curve[s["position"]] == s["expected_ctr"]


def test_a_story_that_beats_the_usual_click_through_of_its_place_stands_out():
    stories = [
        {
            "story_id": 1,
            "title": "Lead",
            "position": 1,
            "human_clicks": 10,
            "impressions": 100,
            "ctr": 0.1,
            "expected_ctr": 0.2,
            "against_slot": "at or below its place",
        },
        {
            "story_id": 2,
            "title": "Sleeper hit",
            "position": 5,
            "human_clicks": 30,
            "impressions": 100,
            "ctr": 0.3,
            "expected_ctr": 0.05,
            "against_slot": "above its place",
        },
    ]
    expected = [
        {"position": 1, "expected_ctr": 0.2},
        {"position": 5, "expected_ctr": 0.05},
    ]
    picture = charts.stories(stories, expected)
    assert "1 beat their place: Sleeper hit (30.0% at place 5, expected 5.0%)" in picture.alt
    svg = picture.svg()
    assert "triangle" in picture.spec["layer"][1]["encoding"]["shape"]["scale"]["range"][0]
    assert "Sleeper hit" in svg and marks(svg) >= 3


def test_list_health_counts_each_days_joiners_and_leavers_and_active_at_its_end(db, the_day):
    rows = list_health(db, "daily", (AS_OF + timedelta(days=30)).date(), "UTC")
    assert len(rows) == 90
    flows = ("new", "unsubscribed", "lapsed", "bounced", "complained")
    totals = {k: sum(r[k] for r in rows) for k in flows}
    assert totals == {"new": 8, "unsubscribed": 1, "lapsed": 0, "bounced": 2, "complained": 1}
    assert rows[-1]["active"] == 4
    assert rows[0]["active"] == 0


def test_the_lapsed_have_a_row_of_their_own_in_the_list_health_chart():
    rows = [
        {
            "day": "2026-11-25",
            "active": 10,
            "new": 2,
            "unsubscribed": 0,
            "bounced": 0,
            "complained": 0,
            "lapsed": 3,
        },
        {
            "day": "2026-11-26",
            "active": 9,
            "new": 0,
            "unsubscribed": 1,
            "bounced": 0,
            "complained": 0,
            "lapsed": 0,
        },
    ]
    picture = charts.health(rows)
    assert picture.columns == [
        "Day",
        "Active",
        "New",
        "Unsubscribed",
        "Lapsed",
        "Bounced",
        "Complained",
    ]
    assert picture.rows[0] == ["2026-11-25", 10, 2, 0, 3, 0, 0]
    assert "3 lapsed" in picture.alt and ">Lapsed<" in picture.svg()


def test_rates_over_the_editions_are_the_reports_rates_per_edition(db, the_day):
    rows = edition_rates(db, "daily", the_day["edition"], "UTC")
    by_series = {r["series"]: r["rate"] for r in rows}
    rates = the_day["total"]["rates"]
    assert by_series["Opened by people"] == rates["opened_by_people"]
    assert by_series["Clicked by people"] == rates["clicked"]
    assert by_series["Bounced"] == rates["bounced_of_sent"]


def test_each_picture_is_an_svg_with_marks_and_a_text_alternative(db, config, the_day):
    pictures = charts.pictures(report_figures(db, config, the_day))
    assert [p.key for p in pictures] == KEYS
    for picture in pictures:
        svg = picture.svg()
        assert svg.startswith('<svg role="img" aria-label="'), picture.key
        assert marks(svg) > 0, picture.key
        assert "<script" not in svg and "http" not in svg.replace("http://www.w3.org", "")
        assert picture.alt and picture.caption and picture.rows
    funnel = pictures[0]
    assert "UTC: 8 sent, 2 clicked by people" in funnel.alt


def test_a_picture_draws_in_the_pages_colour_on_pages_and_dark_ink_in_png(db, config, the_day):
    picture = charts.pictures(report_figures(db, config, the_day))[0]
    assert "currentColor" in picture.svg()
    png = picture.png()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000


def test_the_report_page_shows_five_figures_above_the_tables(db, config, transport, the_day):
    client = create_studio(lambda: config, transport, now=AS_OF).test_client()
    page = client.get("/report", query_string={"last": "1"}).get_data(as_text=True)
    figures = re.findall(r'<figure class="chart" id="chart-(\w+)"', page)
    assert figures == KEYS
    assert page.index('id="chart-rates"') < page.index('<table class="report-numbers">')
    for key in KEYS:
        figure = page[page.index(f'id="chart-{key}"') :]
        figure = figure[: figure.index("</figure>")]
        assert '<svg role="img" aria-label="' in figure and "<figcaption>" in figure
        assert '<details class="chart-numbers">' in figure


def test_the_hours_chart_counts_events_in_the_hour_after_the_send(db, config, the_day):
    rows = report_figures(db, config, the_day)["hours"]
    opens = sum(r["events"] for r in rows if r["series"] == "Opens by people")
    clicks = sum(r["events"] for r in rows if r["series"] == "Clicks by people")
    # Reader 0 opens once and clicks three times, reader 5 opens once, reader 6 opens once and
    # clicks once (click:2); Apple's proxy opens are left out.
    assert (opens, clicks) == (3, 4)


def test_an_outbox_edition_draws_only_its_sent_readers_not_zeros_for_the_unknown():
    numbers = dict.fromkeys(NUMBERS, 0) | {"sent": 8}
    report = {
        "variants": [{"timezone": "UTC", "numbers": numbers}],
        "completeness": {"outbox_only": True, "events": 0},
    }
    assert [(r["stage"], r["readers"]) for r in zone_funnels(report)] == [("Sent", 8)]


def test_the_funnel_has_a_row_of_bars_per_zone_with_variants_of_a_zone_added_up():
    numbers = dict.fromkeys(NUMBERS, 0)
    variant = {"timezone": "UTC", "numbers": numbers | {"sent": 5, "clicks": 1}}
    report = {
        "variants": [
            variant,
            variant | {"numbers": numbers | {"sent": 3, "clicks": 2}},
            {"timezone": "Asia/Kolkata", "numbers": numbers | {"sent": 7, "blocked": 2}},
        ]
    }
    rows = zone_funnels(report)
    sent = {r["zone"]: r["readers"] for r in rows if r["stage"] == "Sent"}
    assert sent == {"UTC": 8, "Asia/Kolkata": 7}
    assert [r["readers"] for r in rows if r["stage"] == "Bounced"] == [0, 2]
    picture = charts.funnel(rows)
    assert (
        "Asia/Kolkata: 7 sent, 0 clicked by people; UTC: 8 sent, 3 clicked by people" in picture.alt
    )
    assert picture.svg().count(">Asia/Kolkata<") == 1


def write_report_file(tmp_path, monkeypatch, *args: str):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digest.toml").write_text(
        '[store]\npath = "digest.db"\n[newsletters.daily]\ntitle = "Test Daily"\n'
    )
    return CliRunner().invoke(cli, ["report", *args])


def test_digest_report_html_writes_one_self_contained_file_with_the_charts(
    db, the_day, tmp_path, monkeypatch
):
    answer = write_report_file(tmp_path, monkeypatch, "--last", "--html", "report.html")
    assert answer.exit_code == 0, answer.output
    assert answer.output == "wrote report.html\n"
    page = (tmp_path / "report.html").read_text()
    assert re.findall(r'<figure class="chart" id="chart-(\w+)"', page) == KEYS
    assert page.count('<svg role="img" aria-label="') == 5
    assert "Test Daily: what came of the edition of 2026-11-26" in page
    # Nothing to fetch: no style sheet, script, image or frame from anywhere.
    assert not re.search(r"<(link|script|iframe|img)\b", page)
    assert "url(" not in page.replace("url(#", "")


def test_digest_report_html_to_a_folder_that_does_not_exist_is_a_clear_error(
    db, the_day, tmp_path, monkeypatch
):
    answer = write_report_file(tmp_path, monkeypatch, "--html", "missing/report.html")
    assert answer.exit_code == 1
    assert "Cannot write the report to missing/report.html" in answer.output


def test_digest_report_takes_json_or_html_not_both(db, the_day, tmp_path, monkeypatch):
    answer = write_report_file(tmp_path, monkeypatch, "--json", "--html", "report.html")
    assert answer.exit_code == 2
    assert "Give --json or --html FILE, not both." in answer.output
    assert not (tmp_path / "report.html").exists()


def test_report_json_gives_each_link_of_a_variant_its_share_of_the_clicks(db, the_day):
    links = the_day["variants"][0]["links"]
    clicked = [link for link in links if link["clicks"]]
    # Reader 0 clicked the first story link twice and the second once (click, click:2,
    # click), reader 6 the second once: each link has half of the edition's four clicks.
    assert sorted((link["clicks"], link["readers"], link["share"]) for link in clicked) == [
        (2, 1, 0.5),
        (2, 2, 0.5),
    ]
    assert sum(link["share"] or 0 for link in links) == pytest.approx(1.0)
    assert all(link["story_id"] for link in clicked)


def test_the_sent_email_page_tables_the_shares_of_report_json(db, config, transport, the_day):
    client = create_studio(lambda: config, transport, now=AS_OF).test_client()
    edition_id = the_day["variants"][0]["edition_id"]
    page = client.get("/report/email", query_string={"edition_id": edition_id})
    assert page.status_code == 200
    rows = re.findall(
        r'<tr data-url="([^"]+)" data-share="([^"]+)" data-clicks="(\d+)">',
        page.get_data(as_text=True),
    )
    expected = [
        (link["url"], charts._percent(link["share"]), str(link["clicks"]))
        for link in the_day["variants"][0]["links"]
        if link["url"]
    ]
    assert [(html.unescape(url), share, n) for url, share, n in rows] == expected
    report_page = client.get("/report", query_string={"last": "1"}).get_data(as_text=True)
    assert f"edition_id={edition_id}" in report_page


def test_the_sent_email_is_served_as_sent_with_reader_links_inert(db, config, transport, the_day):
    client = create_studio(lambda: config, transport, now=AS_OF).test_client()
    edition_id = the_day["variants"][0]["edition_id"]
    email = client.get("/report/email.html", query_string={"edition_id": edition_id})
    assert email.status_code == 200
    assert "default-src 'none'" in email.headers["Content-Security-Policy"]
    body = email.get_data(as_text=True)
    assert "%%" not in body and "/preview" in body
    missing = client.get("/report/email", query_string={"edition_id": 999})
    assert missing.status_code == 404
    assert "No sent edition 999" in missing.get_data(as_text=True)
