"""The figures behind the report's pictures: plain rows read from the ledger, events and audit.

Each function returns lists of plain dicts (what `charts` draws and what the folded tables
beneath the charts print), so the numbers of a picture are the numbers of its table:
the funnel per zone (from the report itself), opens and clicks by hour since each zone's
send, each story's click-through against its position and the expected click-through of
that position in this newsletter's editions, the list's health by day, and the rates of
the last editions.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from ..clock import from_db, to_db
from ..config import Config
from ..edition.render import STORY_PARAMETER
from .report import NUMBERS, edition_numbers, editions_by_day, rates

HOURS = 48
# A story link's parameter in an href, as the renderer writes it (`&` escaped or not).
_STORY_LINK = re.compile(rf"href=\"[^\"]*[?&;]{STORY_PARAMETER}=(\d+)")
HEALTH_DAYS = 90
RATE_EDITIONS = 30
# The stages of the funnel, and the outcomes shown beside it, with the report's number names.
FUNNEL = (
    ("sent", "Sent"),
    ("delivered", "Delivered"),
    ("human_opens", "Opened by people"),
    ("machine_opens", "Apple proxy only"),
    ("clicks", "Clicked"),
)
BESIDE = (("bounced", "Bounced"), ("complaints", "Complaints"))
# The rates drawn over the last editions, with the report's rate names.
RATE_SERIES = (
    ("opened_by_people", "Opened by people"),
    ("clicked", "Clicked"),
    ("bounced_of_sent", "Bounced"),
    ("complained", "Complained"),
    ("unsubscribed", "Unsubscribed"),
)


def _ids_sql(ids: list[int]) -> str:
    return ",".join(str(int(i)) for i in ids)


def zone_funnels(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per time zone of the edition, each funnel stage and the bounces and complaints beside."""
    zones: dict[str, Counter[str]] = {}
    for variant in report["variants"]:
        zones.setdefault(variant["timezone"], Counter()).update(variant["numbers"])
    rows = []
    for zone, numbers in zones.items():
        numbers["bounced"] += numbers["blocked"]
        for kind, stages in (("funnel", FUNNEL), ("beside", BESIDE)):
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
    """Per zone and hour since the zone's first send (0 to 47): opens by people and clicks."""
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
                f"""SELECT CASE WHEN event = 'click' THEN 'Clicks' ELSE 'Opens by people' END,
                           (occurred_at - :start) / 3600 AS hour, COUNT(*)
                    FROM events WHERE edition_id IN ({_ids_sql(ids)})
                      AND (event = 'click' OR (event = 'open' AND machine_open = 0))
                      AND occurred_at >= :start AND occurred_at < :start + :span
                    GROUP BY 1, 2""",
                {"start": start, "span": HOURS * 3600},
            )
        }
        if not counts:
            continue
        for hour in range(HOURS):
            for series in ("Opens by people", "Clicks"):
                rows.append(
                    {
                        "zone": zone,
                        "hour": hour,
                        "series": series,
                        "events": counts.get((series, hour), 0),
                    }
                )
    return rows


def _delivered(db: Database, ids: list[int]) -> dict[int, int]:
    """Per edition, its deliveries known delivered (a complaint was delivered too)."""
    if not ids:
        return {}
    return dict(
        db.execute(
            f"""SELECT edition_id, COUNT(*) FROM delivery_states
                WHERE edition_id IN ({_ids_sql(ids)}) AND state IN ('delivered', 'complained')
                GROUP BY edition_id"""
        ).fetchall()
    )


def _story_readers(db: Database, ids: list[int]) -> dict[tuple[int, int], int]:
    """Per (edition, story), how many of its readers clicked the story."""
    if not ids:
        return {}
    return {
        (edition_id, story_id): n
        for edition_id, story_id, n in db.execute(
            f"""SELECT edition_id, story_id, COUNT(DISTINCT delivery_id) FROM events
                WHERE edition_id IN ({_ids_sql(ids)}) AND event = 'click'
                  AND story_id IS NOT NULL GROUP BY edition_id, story_id"""
        )
    }


def email_order(html: str) -> list[int]:
    """The stories an email links to, in the order a reader meets them (each story's first
    link): its places. An also-read link comes right after its top story."""
    return list(dict.fromkeys(int(n) for n in _STORY_LINK.findall(html)))


def story_positions(
    db: Database, report: dict[str, Any], newsletter: str, days: int = HEALTH_DAYS
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each story of the edition: its place in the email, readers who clicked it, and its
    click-through on delivered; and the expected click-through of each place, from the
    newsletter's editions of the last `days` days (the edition's own included)."""
    last = max(from_db(v["slot_at"]) for v in report["variants"])
    editions = list(
        db.execute(
            """SELECT e.id, e.html FROM editions e WHERE e.newsletter = ?
               AND e.slot_at > ? AND e.slot_at <= ?
               AND EXISTS (SELECT 1 FROM deliveries d WHERE d.edition_id = e.id)""",
            [newsletter, to_db(last - timedelta(days=days)), to_db(last)],
        )
    )
    ids = [edition_id for edition_id, _ in editions]
    delivered, clicked = _delivered(db, ids), _story_readers(db, ids)
    story_ids_of = {edition_id: email_order(html) for edition_id, html in editions}
    by_place: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for edition_id, story_ids in story_ids_of.items():
        for place, story_id in enumerate(story_ids, start=1):
            base = delivered.get(edition_id, 0)
            by_place[place][0] += clicked.get((edition_id, story_id), 0)
            by_place[place][1] += base
    expected = [
        {"position": place, "ctr": round(hits / base, 4), "delivered": base}
        for place, (hits, base) in sorted(by_place.items())
        if base
    ]
    mine: dict[int, dict[str, Any]] = {}
    chosen = [v["edition_id"] for v in report["variants"]]
    for edition_id in chosen:
        for place, story_id in enumerate(story_ids_of.get(edition_id, []), start=1):
            row = mine.setdefault(
                story_id, {"story_id": story_id, "positions": [], "readers": 0, "delivered": 0}
            )
            row["positions"].append(place)
            row["readers"] += clicked.get((edition_id, story_id), 0)
            row["delivered"] += delivered.get(edition_id, 0)
    titles = _titles(db, list(mine))
    stories = []
    for story_id, row in mine.items():
        if not row["delivered"]:
            continue
        # A story at different places in different variants is drawn at its usual place.
        position = Counter(row["positions"]).most_common(1)[0][0]
        ctr = round(row["readers"] / row["delivered"], 4)
        usual = next((e["ctr"] for e in expected if e["position"] == position), None)
        stories.append(
            {
                "story_id": story_id,
                "title": titles.get(story_id, f"story {story_id}"),
                "position": position,
                "readers": row["readers"],
                "delivered": row["delivered"],
                "ctr": ctr,
                "expected": usual,
                "against_slot": "above its place"
                if usual is not None and ctr > usual
                else "at or below its place",
            }
        )
    stories.sort(key=lambda s: (s["position"], s["story_id"]))
    return stories, expected


def _titles(db: Database, story_ids: list[int]) -> dict[int, str]:
    if not story_ids:
        return {}
    return dict(
        db.execute(f"SELECT id, title FROM stories WHERE id IN ({_ids_sql(story_ids)})").fetchall()
    )


def list_health(
    db: Database, newsletter: str, last_day: date, zone: str, days: int = HEALTH_DAYS
) -> list[dict[str, Any]]:
    """Per local day of the last `days` up to `last_day`: the readers active at its end, and
    the day's new, unsubscribed, bounced and complained readers, from the audit trail.

    Active is counted back from the subscriptions as they are now through each day's
    changes; bounces and complaints (of the address) count for readers of this newsletter.
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
        elif action == "subscription" and new == "unsubscribed":
            change["unsubscribed"] += 1
            change["left"] += old == "active"
        elif action == "address":
            change[new] += 1
            change["left"] += old == "active"
        (flows[day] if day <= last_day else later).update(change)
    active_now = db.execute(
        """SELECT COUNT(*) FROM subscriptions s JOIN subscribers r ON r.id = s.subscriber_id
           WHERE s.newsletter = ? AND s.status = 'active' AND r.status = 'active'""",
        [newsletter],
    ).fetchone()[0]
    active = active_now - later["new"] + later["left"]
    rows = []
    for offset in range(days - 1, -1, -1):
        day = first_day + timedelta(days=offset)
        flow = flows.get(day, Counter())
        rows.append(
            {
                "day": day.isoformat(),
                "active": max(active, 0),
                "new": flow["new"],
                "unsubscribed": flow["unsubscribed"],
                "bounced": flow["bounced"],
                "complained": flow["complained"],
            }
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
    stories, expected = story_positions(db, report, nl.name)
    last_day = date.fromisoformat(report["edition"])
    return {
        "funnel": zone_funnels(report),
        "hours": hours_since_send(db, report),
        "stories": stories,
        "expected": expected,
        "health": list_health(db, nl.name, last_day, nl.timezone),
        "rates": edition_rates(db, nl.name, report["edition"], nl.timezone),
    }
