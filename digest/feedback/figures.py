"""The figures behind the report's pictures: plain rows read from the ledger, events and audit.

Each function returns lists of plain dicts (what `charts` draws and what the folded tables
beneath the charts print), so the numbers of a picture are the numbers of its table:
the funnel per zone (from the report itself), opens and clicks by hour since each zone's
send, each story's click-through against its position and the expected click-through of
that position in this newsletter's editions, the list's health by day, and the rates of
the last editions.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from ..clock import from_db, to_db
from ..config import Config
from .list_health import state_counts
from .report import BY_PEOPLE, NUMBERS, edition_numbers, editions_by_day, rates

HOURS = 48
HEALTH_DAYS = 90
# Each day's changes of the list, drawn under its active readers.
HEALTH_FLOWS = ("new", "unsubscribed", "lapsed", "bounced", "complained")
RATE_EDITIONS = 30
# The stages of the funnel, and the outcomes shown beside it, with the report's number names.
FUNNEL = (
    ("sent", "Sent"),
    ("delivered", "Delivered"),
    ("human_opens", "Opened by people"),
    ("machine_opens", "Apple proxy only"),
    ("clicks", "Clicked by people"),
)
BESIDE = (
    ("machine_clicks", "Clicked by machines only"),
    ("bounced", "Bounced"),
    ("complaints", "Complaints"),
)
# The rates drawn over the last editions, with the report's rate names.
RATE_SERIES = (
    ("opened_by_people", "Opened by people"),
    ("clicked", "Clicked by people"),
    ("bounced_of_sent", "Bounced"),
    ("complained", "Complained"),
    ("unsubscribed", "Unsubscribed"),
)


def _ids_sql(ids: list[int]) -> str:
    return ",".join(str(int(i)) for i in ids)


def zone_funnels(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per time zone of the edition, each funnel stage and the bounces and complaints beside.

    An edition written to the outbox that no event came for: only its sent readers are
    drawn, as the report prints the rest as unknown (n/a), not 0 (its per-story rule).
    """
    completeness = report.get("completeness", {})
    unknown = completeness.get("outbox_only", False) and not completeness.get("events")
    funnel, beside = (FUNNEL[:1], ()) if unknown else (FUNNEL, BESIDE)
    zones: dict[str, Counter[str]] = {}
    for variant in report["variants"]:
        zones.setdefault(variant["timezone"], Counter()).update(variant["numbers"])
    rows = []
    for zone, numbers in zones.items():
        numbers["bounced"] += numbers["blocked"]
        for kind, stages in (("funnel", funnel), ("beside", beside)):
            for order, (name, label) in enumerate(stages):
                rows.append(
                    {
                        "zone": zone,
                        "stage": label,
                        "order": order if kind == "funnel" else len(FUNNEL) + order,
                        "kind": kind,
                        "readers": numbers[name],
                    }
                )
    return rows


def hours_since_send(db: Database, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per zone and hour since the zone's first send (0 to 47): opens by people and clicks by
    people (a click `feedback.machines` judged a scanner's is left out, as the click map does)."""
    ids_by_zone: dict[str, list[int]] = defaultdict(list)
    for variant in report["variants"]:
        ids_by_zone[variant["timezone"]].append(variant["edition_id"])
    rows = []
    for zone, ids in ids_by_zone.items():
        first = db.execute(
            f"""SELECT MIN(sent_at) FROM deliveries
                WHERE edition_id IN ({_ids_sql(ids)}) AND status = 'sent'"""
        ).fetchone()[0]
        if first is None:
            continue
        start = int(from_db(first).timestamp())
        counts = {
            (series, hour): n
            for series, hour, n in db.execute(
                f"""SELECT CASE WHEN event = 'click' THEN 'Clicks by people'
                           ELSE 'Opens by people' END,
                           (occurred_at - :start) / 3600 AS hour, COUNT(*)
                    FROM events WHERE edition_id IN ({_ids_sql(ids)})
                      AND ((event = 'click' AND {BY_PEOPLE})
                           OR (event = 'open' AND machine_open = 0))
                      AND occurred_at >= :start AND occurred_at < :start + :span
                    GROUP BY 1, 2""",
                {"start": start, "span": HOURS * 3600},
            )
        }
        if not counts:
            continue
        for hour in range(HOURS):
            for series in ("Opens by people", "Clicks by people"):
                rows.append(
                    {
                        "zone": zone,
                        "hour": hour,
                        "series": series,
                        "events": counts.get((series, hour), 0),
                    }
                )
    return rows


def story_positions(report: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each story of the edition at its place, with the report's own per-story figures
    (impressions, people's clicks, click-through and the click-through expected at its
    positions, from `edition.lift`), and the expected click-through of each place: the
    report's numbers drawn, not counted again."""
    expected = [
        {"position": e["position"], "expected_ctr": e["expected_ctr"]}
        for e in report["expected_ctr_by_position"]
    ]
    stories = []
    for row in report["stories"]:
        if not row["impressions"] or row["ctr"] is None:
            continue
        # A story at different places in different variants is drawn at its first place.
        stories.append(
            {
                "story_id": row["story_id"],
                "title": row["title"] or f"story {row['story_id']}",
                "position": row["positions"][0],
                "human_clicks": row["human_clicks"],
                "impressions": row["impressions"],
                "ctr": row["ctr"],
                "expected_ctr": row["expected_ctr"],
                "against_slot": "above its place" if row["lift"] > 1 else "at or below its place",
            }
        )
    stories.sort(key=lambda s: (s["position"], s["story_id"]))
    return stories, expected


def list_health(
    db: Database, newsletter: str, last_day: date, zone: str, days: int = HEALTH_DAYS
) -> list[dict[str, Any]]:
    """Per local day of the last `days` up to `last_day`: the readers active at its end, and
    the day's new (or back from lapsed), unsubscribed, lapsed, bounced and complained readers,
    from the audit trail.

    Active is counted back from the subscriptions as they are now (`list_health`'s active,
    what `digest report --list` prints) through each day's changes, so the last day's is
    that count; bounces and complaints (of the address) count for readers of this newsletter.
    """
    tz = ZoneInfo(zone)
    first_day = last_day - timedelta(days=days - 1)
    since = datetime.combine(first_day, datetime.min.time(), tz)
    flows: dict[date, Counter[str]] = defaultdict(Counter)
    later = Counter[str]()
    for at, action, old, new in db.execute(
        """SELECT a.at, a.action, a.old_status, a.new_status FROM audit a
           WHERE a.at >= ? AND (
               (a.action = 'subscription' AND a.newsletter = ?)
               OR (a.action = 'address' AND a.new_status IN ('bounced', 'complained')
                   AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.subscriber_id = a.subscriber_id
                               AND s.newsletter = ?)))""",
        [to_db(since), newsletter, newsletter],
    ):
        day = from_db(at).astimezone(tz).date()
        change = Counter[str]()
        if action == "subscription" and new == "active" and old != "active":
            change["new"] += 1
        elif action == "address" or new in ("unsubscribed", "lapsed"):
            # The address's bounce or complaint, or the subscription's end or rest.
            change[new] += 1
            change["left"] += old == "active"
        (flows[day] if day <= last_day else later).update(change)
    active = state_counts(db, newsletter)["active"] - later["new"] + later["left"]
    rows = []
    for offset in range(days - 1, -1, -1):
        day = first_day + timedelta(days=offset)
        flow = flows.get(day, Counter())
        rows.append(
            {"day": day.isoformat(), "active": max(active, 0)}
            | {name: flow[name] for name in HEALTH_FLOWS}
        )
        active = active - flow["new"] + flow["left"]
    rows.reverse()
    return rows


def edition_rates(
    db: Database, newsletter: str, last_day: str, zone: str, count: int = RATE_EDITIONS
) -> list[dict[str, Any]]:
    """The rates of the newsletter's last `count` editions up to `last_day`, one row each."""
    days = {
        day.isoformat(): [row["id"] for row in rows]
        for day, rows in editions_by_day(db, newsletter, zone).items()
        if day.isoformat() <= last_day
    }
    chosen = sorted(days)[-count:]
    ids = [i for day in chosen for i in days[day]]
    numbers = edition_numbers(db, newsletter, ids) if ids else {}
    result = []
    for day in chosen:
        total = Counter[str]()
        for edition_id in days[day]:
            total.update(numbers[edition_id])
        edition = rates({name: total[name] for name in NUMBERS})
        for name, label in RATE_SERIES:
            result.append({"edition": day, "series": label, "rate": edition[name]})
    return result


def report_figures(db: Database, config: Config, report: dict[str, Any]) -> dict[str, Any]:
    """Every figure of the report's pictures, for the edition `report` is about."""
    nl = config.newsletter(report["newsletter"])
    stories, expected = story_positions(report)
    last_day = date.fromisoformat(report["edition"])
    return {
        "funnel": zone_funnels(report),
        "hours": hours_since_send(db, report),
        "stories": stories,
        "expected": expected,
        "health": list_health(db, nl.name, last_day, nl.timezone),
        "rates": edition_rates(db, nl.name, report["edition"], nl.timezone),
    }
